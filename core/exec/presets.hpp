// Hardware presets of the cost model, "<model>@<gpu>": a roofline model of Llama-2 7B / 13B
// (one GPU) and 70B (tensor parallel 4) on A100-80GB and H100-80GB SXM, from published
// figures, with one achieved-efficiency factor calibrated on dLoRA's 7B/A100 measurements, and
// the unmerged path's LoRA work priced by explicit terms in one of two regimes of LoRA kernels
// (docs/costmodel.md has every figure and its source).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/exec/costmodel.hpp"

namespace lorasched {

struct GpuSpec {
  std::string name;               // "a100-80gb"
  std::string description;        // "NVIDIA A100-SXM4-80GB"
  double hbm_bytes_per_s = 0;     // HBM bandwidth
  double peak_flops = 0;          // dense fp16/bf16 tensor-core peak
  double pcie_bytes_per_s = 0;    // effective host<->device copy bandwidth (x16 link)
  double nvlink_bytes_per_s = 0;  // NVLink bandwidth per direction per GPU (tensor parallel)
  double memory_bytes = 0;        // device memory per GPU
};

// The kernels the unmerged path runs, which decide what its LoRA terms cost ([cluster]
// costmodel_lora):
//  * artifact: dLoRA's artifact, whose LoRA work costs a fixed overhead per adapter segment
//    and target module (a kernel launch per adapter), calibrated so its reference batch of 16
//    distinct adapters takes its measured 27 ms on 7B/A100;
//  * sgmv: Punica's SGMV / S-LoRA's MBGMV, one launch pair per pass and target module for
//    every adapter of the batch, from Punica's measured overhead per decode step.
enum class LoraKernels : uint8_t { artifact = 0, sgmv = 1 };

// Fixed overheads of the LoRA kernels, per target module per layer; the weights read and the
// FLOPs come on top (a roofline of the LoRA kernels).
struct LoraTerms {
  double per_pass = 0;     // seconds per LoRA pass (kernel launches)
  double per_segment = 0;  // seconds per (adapter, row run) segment
};

struct RooflineCalibration {
  double efficiency = 0;         // achieved fraction of peak bandwidth / FLOP/s (eta)
  double eta_iteration = 0;      // what the 15 ms merged iteration alone would give
  double eta_switch = 0;         // what the 20 ms switch alone would give
  double allreduce_latency = 0;  // seconds per all-reduce (tensor parallel), assumed
  LoraTerms artifact;            // LoraKernels::artifact (per_segment calibrated, per_pass 0)
  LoraTerms sgmv;                // LoraKernels::sgmv (per_pass from Punica, per_segment 0)
  const LoraTerms& terms(LoraKernels k) const { return k == LoraKernels::sgmv ? sgmv : artifact; }
};

// The calibration, computed once from the 7B/A100 reference (docs/costmodel.md).
const RooflineCalibration& roofline_calibration();

// "llama2-7b@a100-80gb", ... (the six hardware presets).
std::vector<std::string> hardware_preset_names();
const std::vector<GpuSpec>& gpu_specs();

// The preset named `spec` with the unmerged path's kernels `kernels`, or nullptr when `spec` has
// no '@'. Throws InputError for an unknown model or GPU, and when `shape` is not the preset's
// model.
std::unique_ptr<CostModel> make_hardware_preset(const std::string& spec, const ModelShape& shape,
                                                LoraKernels kernels = LoraKernels::artifact);

}  // namespace lorasched
