#include "core/exec/presets.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

#include "core/adapters/adapter.hpp"
#include "core/common/error.hpp"
#include "core/common/strings.hpp"
#include "core/model/presets.hpp"

namespace lorasched {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr int kElem = 2;  // fp16 weights, activations and KV cache

// dLoRA's artifact (vllm/core/scheduler.py; docs/dlora-artifact.md#constants): Llama-2-7B
// on an A100-80GB, batch 16, at the reference batch of costmodel.hpp (16 decoding requests
// with a mean context of 512 tokens: ShareGPT has a mean prompt of 161 and a mean output of
// 338 tokens, and a running request's context averages about prompt + output when sampled by
// time in the batch; unmerged, 16 distinct rank-16 adapters on all seven target modules).
constexpr double kRefMerged = 0.015;
constexpr double kRefUnmerged = 0.027;
constexpr double kRefSwitch = 0.020;
// Punica (Chen et al., MLSys'24) reports that its SGMV kernels add about 2 ms per generated
// token: spread over the 32 layers x 7 target modules of Llama-2-7B, the fixed cost of one
// SGMV pass (a shrink and an expand launch) on one module (docs/costmodel.md).
constexpr double kPunicaPerToken = 0.002;
// Latency of one NCCL all-reduce of a small message between GPUs of one NVLink node (an
// assumption; nccl-tests report ~10-20 us): two per layer with tensor parallelism.
constexpr double kAllreduceLatency = 10e-6;

struct ModelPreset {
  const char* name;   // "llama2-70b-tp4"
  const char* model;  // model_preset() name
  int tp;
};
constexpr ModelPreset kModels[] = {{"llama2-7b", "llama2-7b", 1},
                                   {"llama2-13b", "llama2-13b", 1},
                                   {"llama2-70b-tp4", "llama2-70b", 4}};

// A roofline of one iteration on `tp` GPUs: the bytes every GPU streams from HBM (its share
// of the weights, KV cache read by decodes and written by prefills) against the FLOPs it runs
// (linear layers, LM head, attention), whichever takes longer at peak, divided by the achieved
// efficiency; plus two all-reduces per layer with tensor parallelism. The LoRA kernels come on
// top, priced by explicit terms: a roofline of their own (the distinct adapters' weights read,
// 2 x params per rank FLOPs per token and rank) plus the fixed overheads of the regime, per pass
// and per segment on every target module of every layer.
class RooflineCostModel final : public CostModel {
 public:
  RooflineCostModel(std::string name, ModelShape shape, int tp, GpuSpec gpu,
                    RooflineCalibration cal, LoraKernels kernels)
      : name_(std::move(name)),
        shape_(std::move(shape)),
        tp_(tp),
        gpu_(std::move(gpu)),
        cal_(cal),
        kernels_(kernels),
        terms_(cal.terms(kernels)) {
    const ModelShape& s = shape_;
    for (int t = 0; t < kNumTargets; ++t)
      linear_params_ += static_cast<double>(s.out_features(Target(t))) * s.in_features(Target(t));
    linear_params_ *= s.num_layers;
    const double vh = static_cast<double>(s.vocab_size) * s.hidden_size;
    // Every weight is read once per iteration except the embedding table (a lookup).
    stream_bytes_ =
        (static_cast<double>(s.num_parameters()) - (s.tie_word_embeddings ? 0.0 : vh)) * kElem;
    lm_head_flops_ = 2.0 * vh;
    kv_bytes_per_token_ = static_cast<double>(s.kv_bytes_per_token(kElem));
    q_dim_layers_ = static_cast<double>(s.num_heads) * s.head_dim * s.num_layers;
    lora_params_per_rank_ = static_cast<double>(lora_parameters(s, 1));
  }

  std::string describe() const override {
    return fmt::format("{} roofline cost model ({}{}, efficiency {:.3f}, {} LoRA kernels)", name_,
                       tp_ > 1 ? fmt::format("{} x ", tp_) : std::string(), gpu_.description,
                       cal_.efficiency, kernels_ == LoraKernels::sgmv ? "sgmv" : "artifact");
  }

  IterationTime iteration_time(const BatchFeatures& f) const override {
    const double p = tp_;
    const double T = static_cast<double>(f.tokens());
    const double bytes =
        stream_bytes_ +
        kv_bytes_per_token_ * static_cast<double>(f.decode_context + f.prefill_tokens);
    const double flops = 2.0 * linear_params_ * T + lm_head_flops_ * f.entries +
                         2.0 * q_dim_layers_ * static_cast<double>(f.prefill_sq_tokens) +
                         4.0 * q_dim_layers_ * static_cast<double>(f.decode_context);
    IterationTime t;
    t.base = roofline(bytes, flops);
    if (tp_ > 1) {
      const double msg = T * shape_.hidden_size * kElem;  // one all-reduce's payload
      const double ring = 2.0 * (p - 1) / p * msg / (gpu_.nvlink_bytes_per_s * cal_.efficiency);
      t.base += 2.0 * shape_.num_layers * (ring + cal_.allreduce_latency);
    }
    t.lora = lora_time(f, terms_);
    return t;
  }

  // The LoRA kernels' part: their roofline (each GPU reads its share of the distinct adapters'
  // weights and runs its share of the products) plus the regime's fixed overheads, which every
  // GPU pays in parallel. A mixed batch's two terms per row (own adapter, minus the merged one)
  // are priced as V-LoRA's deLoRA computes them: in one pass, each row group's segment carrying
  // both adapters (the cpu and cuda executors run two passes; their profiles measure that).
  double lora_time(const BatchFeatures& f, const LoraTerms& terms) const {
    if (f.lora_tokens == 0) return 0;
    const double bytes = lora_params_per_rank_ * kElem * static_cast<double>(f.lora_adapter_rank);
    const double flops = 2.0 * lora_params_per_rank_ * static_cast<double>(f.lora_token_rank);
    const double segments = static_cast<double>(f.lora_segments) / std::max(1, f.lora_passes);
    return roofline(bytes, flops) + static_cast<double>(shape_.num_layers) * kNumTargets *
                                        (terms.per_pass + terms.per_segment * segments);
  }

  // One pass over every target weight, W +-= s B A (a merge or an unmerge) or, fused,
  // W += s_b B_b A_b - s_a B_a A_a: reads and writes the target weights once, reads the
  // adapters, runs their rank-r products.
  double pass_time(const AdapterInfo* a, const AdapterInfo* b) const {
    double bytes = 2.0 * linear_params_ * kElem, flops = 0;
    for (const AdapterInfo* x : {a, b})
      if (x) {
        bytes += static_cast<double>(x->bytes);
        flops += 2.0 * x->rank * linear_params_;
      }
    return roofline(bytes, flops);
  }
  double switch_time(const AdapterInfo& a) const { return pass_time(&a, nullptr); }

  std::vector<CostStep> switch_steps(const AdapterInfo* from, const AdapterInfo* to,
                                     SwitchMethod method) const override {
    std::vector<CostStep> s;
    if (from && to && method == SwitchMethod::fused) {
      s.push_back({EventKind::adapter_switch, to->id, pass_time(from, to), from->bytes + to->bytes,
                   from->id});
      return s;
    }
    if (from) s.push_back({EventKind::unmerge, from->id, switch_time(*from), from->bytes});
    if (to) s.push_back({EventKind::merge, to->id, switch_time(*to), to->bytes});
    return s;
  }
  // Each GPU copies its shard over its own PCIe link.
  double load(int64_t bytes) const override {
    return static_cast<double>(bytes) / tp_ / gpu_.pcie_bytes_per_s;
  }
  double swap(int64_t bytes, bool) const override {
    return static_cast<double>(bytes) / tp_ / gpu_.pcie_bytes_per_s;
  }
  double device_memory_bytes() const override { return gpu_.memory_bytes * tp_; }
  int bytes_per_element() const override { return kElem; }
  const ModelShape& shape() const override { return shape_; }

 private:
  // Time at the achieved efficiency of moving `bytes` and running `flops`, split over the GPUs.
  double roofline(double bytes, double flops) const {
    return std::max(bytes / tp_ / gpu_.hbm_bytes_per_s, flops / tp_ / gpu_.peak_flops) /
           cal_.efficiency;
  }

  std::string name_;
  ModelShape shape_;
  int tp_;
  GpuSpec gpu_;
  RooflineCalibration cal_;
  LoraKernels kernels_;
  LoraTerms terms_;
  double linear_params_ = 0, stream_bytes_ = 0, lm_head_flops_ = 0, kv_bytes_per_token_ = 0;
  double q_dim_layers_ = 0, lora_params_per_rank_ = 0;
};

}  // namespace

const std::vector<GpuSpec>& gpu_specs() {
  // NVIDIA A100 and H100 datasheets (SXM, 80 GB): HBM bandwidth, dense FP16 tensor peak,
  // NVLink (600 / 900 GB/s total = 300 / 450 GB/s per direction). PCIe 4.0 / 5.0 x16 give
  // 32 / 64 GB/s per direction in theory, ~25 / ~50 GB/s effective for pinned copies.
  static const std::vector<GpuSpec> specs = {
      {"a100-80gb", "NVIDIA A100-SXM4-80GB", 2.039e12, 312e12, 25e9, 300e9, 80 * kGiB},
      {"h100-80gb", "NVIDIA H100-SXM5-80GB", 3.35e12, 989e12, 50e9, 450e9, 80 * kGiB},
  };
  return specs;
}

const RooflineCalibration& roofline_calibration() {
  static const RooflineCalibration cal = [] {
    const ModelShape s = model_preset("llama2-7b");
    const GpuSpec& a100 = gpu_specs()[0];
    RooflineCalibration peak;
    peak.efficiency = 1.0;
    const RooflineCostModel at_peak("calibration", s, 1, a100, peak, LoraKernels::artifact);
    RooflineCalibration c;
    c.eta_iteration = at_peak.iteration(reference_batch(false)) / kRefMerged;
    c.eta_switch = at_peak.switch_time(reference_adapter(s, kElem)) / kRefSwitch;
    // One factor for both: the least-squares fit of log(efficiency) to the two figures.
    c.efficiency = std::sqrt(c.eta_iteration * c.eta_switch);
    c.allreduce_latency = kAllreduceLatency;
    // Artifact: what the 27 ms unmerged reference iteration has beyond the base iteration and
    // the LoRA kernels' roofline is a fixed cost per adapter segment (16 of them) and module.
    const RooflineCostModel at_eta("calibration", s, 1, a100, c, LoraKernels::artifact);
    const BatchFeatures ref = reference_batch(true);
    const double rest =
        kRefUnmerged - at_eta.iteration_time(ref).base - at_eta.lora_time(ref, LoraTerms{});
    c.artifact.per_segment =
        rest / (static_cast<double>(ref.lora_segments) * s.num_layers * kNumTargets);
    // SGMV: one pass of launches per module carries Punica's per-token overhead.
    c.sgmv.per_pass = kPunicaPerToken / (static_cast<double>(s.num_layers) * kNumTargets);
    return c;
  }();
  return cal;
}

std::vector<std::string> hardware_preset_names() {
  std::vector<std::string> out;
  for (const auto& m : kModels)
    for (const auto& g : gpu_specs()) out.push_back(fmt::format("{}@{}", m.name, g.name));
  return out;
}

std::unique_ptr<CostModel> make_hardware_preset(const std::string& spec, const ModelShape& shape,
                                                LoraKernels kernels) {
  const auto at = spec.find('@');
  if (at == std::string::npos) return nullptr;
  const std::string model = spec.substr(0, at), gpu = spec.substr(at + 1);
  const ModelPreset* mp = nullptr;
  std::vector<std::string> model_names;
  for (const auto& m : kModels) {
    model_names.push_back(m.name);
    if (model == m.name) mp = &m;
  }
  if (!mp) {
    const std::string hint = model == "llama2-70b"
                                 ? " (70B needs tensor parallelism: use llama2-70b-tp4)"
                                 : did_you_mean(model, model_names);
    throw InputError(
        fmt::format("unknown cost model '{}': no hardware preset for model '{}'{} (presets: {})",
                    spec, model, hint, join(hardware_preset_names(), ", ")));
  }
  const GpuSpec* g = nullptr;
  std::vector<std::string> gpu_names;
  for (const auto& x : gpu_specs()) {
    gpu_names.push_back(x.name);
    if (gpu == x.name) g = &x;
  }
  if (!g)
    throw InputError(fmt::format("unknown cost model '{}': no GPU '{}'{} (GPUs: {})", spec, gpu,
                                 did_you_mean(gpu, gpu_names), join(gpu_names, ", ")));
  const ModelShape preset_shape = model_preset(mp->model);
  if (const std::string diff = shape_difference(preset_shape, shape); !diff.empty())
    throw InputError(
        fmt::format("cost model '{}' models {}, but the experiment's model is '{}' ({})", spec,
                    preset_shape.name, shape.name, diff));
  return std::make_unique<RooflineCostModel>(spec, preset_shape, mp->tp, *g, roofline_calibration(),
                                             kernels);
}

}  // namespace lorasched
