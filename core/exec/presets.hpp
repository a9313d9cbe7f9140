// Hardware presets of the cost model, "<model>@<gpu>": a roofline model of Llama-2 7B / 13B
// (one GPU) and 70B (tensor parallel 4) on A100-80GB and H100-80GB SXM, from published
// figures, with one achieved-efficiency factor calibrated on dLoRA's 7B/A100 measurements
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

struct RooflineCalibration {
  double efficiency = 0;         // achieved fraction of peak bandwidth / FLOP/s (eta)
  double eta_iteration = 0;      // what the 15 ms merged iteration alone would give
  double eta_switch = 0;         // what the 20 ms switch alone would give
  double segment_overhead = 0;   // seconds per distinct adapter per target module per layer
  double allreduce_latency = 0;  // seconds per all-reduce (tensor parallel), assumed
};

// The calibration, computed once from the 7B/A100 reference (docs/costmodel.md).
const RooflineCalibration& roofline_calibration();

// "llama2-7b@a100-80gb", ... (the six hardware presets).
std::vector<std::string> hardware_preset_names();
const std::vector<GpuSpec>& gpu_specs();

// The preset named `spec`, or nullptr when `spec` has no '@'. Throws InputError for an
// unknown model or GPU, and when `shape` is not the preset's model.
std::unique_ptr<CostModel> make_hardware_preset(const std::string& spec, const ModelShape& shape);

}  // namespace lorasched
