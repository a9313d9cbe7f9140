// Hardware presets: the 7B/A100 preset reproduces dLoRA's 15 / 27 / 20 ms it was fitted to
// (a fit check), predicts published measurements the fit did not use within the stated band
// (an out-of-sample check), the other presets follow from the same calibration, 70B with
// tensor parallelism runs; and the dlora-artifact timing model is unchanged.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/config/experiment.hpp"
#include "core/exec/presets.hpp"
#include "costmodel_util.hpp"

namespace lorasched::test {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// dLoRA's reference batch: 16 decoding requests (mean context 512); unmerged: 16 distinct
// rank-16 adapters.
BatchFeatures reference(const ModelShape& s, bool unmerged, int batch = 16, int context = 512) {
  std::vector<int> ranks(16, 16);
  const auto adapters = adapters_of(s, ranks, 2);
  std::vector<SeqSpec> seqs;
  for (int i = 0; i < batch; ++i) seqs.push_back({unmerged ? i % 16 : 0, false, context});
  return batch_features(make_batch(unmerged ? api::Mode::unmerged : api::Mode::merged,
                                   unmerged ? api::kNoAdapter : 0, seqs),
                        adapters);
}

double switch_time(const CostModel& m, int rank) {
  const auto a = adapters_of(m.shape(), {rank}, m.bytes_per_element());
  const auto steps = m.switch_steps(nullptr, &a[0], SwitchMethod::fused);
  EXPECT_EQ(steps.size(), 1u);
  return steps.at(0).seconds;
}

// A fit check, not a validation: the preset's efficiency and per-adapter overhead were computed
// from exactly these three figures (docs/costmodel.md, "Calibration"), so this only shows that
// the calibration code still does what the doc says. PublishedA100DecodeOutOfSample below is
// the check against numbers the fit never saw.
TEST(Presets, Llama7bA100FitReproducesDloraFigures) {
  const ModelShape s = model_preset("llama2-7b");
  auto m = make_cost_model("llama2-7b@a100-80gb", s);
  const double merged = m->iteration(reference(s, false));
  const double unmerged = m->iteration(reference(s, true));
  const double sw = switch_time(*m, 16);
  EXPECT_NEAR(merged, 0.015, 0.0015) << merged;
  EXPECT_NEAR(unmerged, 0.027, 0.0027) << unmerged;
  EXPECT_NEAR(sw, 0.020, 0.0020) << sw;
  EXPECT_EQ(m->bytes_per_element(), 2);
  EXPECT_EQ(m->device_memory_bytes(), 80 * kGiB);
  const auto& cal = roofline_calibration();
  EXPECT_GT(cal.efficiency, 0.3);
  EXPECT_LT(cal.efficiency, 1.0);
  EXPECT_GT(cal.artifact.per_segment, 0);
  // Loads over PCIe 4: a rank-16 adapter (80 MB fp16) in ~3 ms.
  const auto a = adapters_of(s, {16}, 2);
  EXPECT_NEAR(m->load(a[0].bytes), static_cast<double>(a[0].bytes) / 25e9, 1e-12);
}

// Out of sample: LMDeploy's published static-inference benchmark of Llama-2 on A100-80G in
// FP16 (github.com/InternLM/lmdeploy, docs/en/benchmark/a100_fp16.md, lmdeploy v0.1.0a1, rows
// "prompt_tokens 1, output_tokens 128"): a batch of B one-token prompts generates 128 tokens
// each, so its time is 128 decode steps at contexts 1..128 and the mean step time is
// B / (output tokens per second). None of these figures entered the fit (one 7B batch of 16 at
// context 512, from dLoRA's artifact); 13B and 70B-TP4 enter only through the roofline.
// Expected agreement (docs/costmodel.md, "Out-of-sample check"): the preset models another
// engine (dLoRA's), so it is not expected to match TurboMind exactly; at the batch sizes the
// dLoRA experiments run (up to 16) it must stay within -15% / +25% of the measurement, which
// a systematic error of the roofline (a wrong bandwidth, η or per-layer term, of 1.3x or more)
// would break. At batch 64 the roofline is known to be optimistic (it has no term that grows
// with the batch besides KV reads and FLOPs): that gap is bounded here, not hidden.
TEST(Presets, PublishedA100DecodeOutOfSample) {
  struct Published {
    const char* preset;
    const char* model;
    int batch;
    double tokens_per_second;  // "throughput(out tok/s)" of the row
  };
  const Published rows[] = {
      {"llama2-7b@a100-80gb", "llama2-7b", 1, 100.02},
      {"llama2-7b@a100-80gb", "llama2-7b", 16, 1504.72},
      {"llama2-7b@a100-80gb", "llama2-7b", 64, 4154.81},
      {"llama2-13b@a100-80gb", "llama2-13b", 1, 57.49},
      {"llama2-13b@a100-80gb", "llama2-13b", 16, 869.45},
      {"llama2-13b@a100-80gb", "llama2-13b", 64, 3049.16},
      {"llama2-70b-tp4@a100-80gb", "llama2-70b", 1, 33.94},
      {"llama2-70b-tp4@a100-80gb", "llama2-70b", 16, 468.52},
      {"llama2-70b-tp4@a100-80gb", "llama2-70b", 64, 1425.79},
  };
  constexpr int kSteps = 128;
  for (const auto& r : rows) {
    const ModelShape s = model_preset(r.model);
    auto m = make_cost_model(r.preset, s);
    double total = 0;
    for (int context = 1; context <= kSteps; ++context)
      total += m->iteration(reference(s, false, r.batch, context));
    const double predicted = total / kSteps;
    const double measured = r.batch / r.tokens_per_second;
    const double ratio = predicted / measured;
    const double low = r.batch <= 16 ? 0.85 : 0.6;
    std::printf("%s batch %d: predicted %.2f ms, published %.2f ms, ratio %.3f\n", r.preset,
                r.batch, predicted * 1e3, measured * 1e3, ratio);
    EXPECT_GE(ratio, low) << r.preset << " batch " << r.batch;
    EXPECT_LE(ratio, 1.25) << r.preset << " batch " << r.batch;
  }
}

TEST(Presets, EveryPresetBuildsAndScalesSensibly) {
  const auto names = hardware_preset_names();
  EXPECT_EQ(names.size(), 6u);
  for (const auto& n : names) {
    const std::string model =
        n.substr(0, n.find('@')) == "llama2-70b-tp4" ? "llama2-70b" : n.substr(0, n.find('@'));
    auto m = make_cost_model(n, model_preset(model));
    const ModelShape& s = m->shape();
    // Monotone in batch size, context and distinct adapters; prefill costs more than decode.
    double prev = 0;
    for (int b : {1, 2, 4, 8, 16, 32, 64}) {
      const double t = m->iteration(reference(s, false, b));
      EXPECT_GE(t, prev) << n << " batch " << b;
      prev = t;
    }
    EXPECT_LT(m->iteration(reference(s, false, 16, 128)),
              m->iteration(reference(s, false, 16, 4096)))
        << n;
    EXPECT_LT(m->iteration(reference(s, false)), m->iteration(reference(s, true))) << n;
    EXPECT_LT(switch_time(*m, 8), switch_time(*m, 64) + 1e-12) << n;
    EXPECT_GT(m->device_memory_bytes() * 0.9, static_cast<double>(s.num_parameters()) * 2) << n;
  }
  auto a7 = make_cost_model("llama2-7b@a100-80gb", model_preset("llama2-7b"));
  auto h7 = make_cost_model("llama2-7b@h100-80gb", model_preset("llama2-7b"));
  auto a13 = make_cost_model("llama2-13b@a100-80gb", model_preset("llama2-13b"));
  auto a70 = make_cost_model("llama2-70b-tp4@a100-80gb", model_preset("llama2-70b"));
  const auto s7 = model_preset("llama2-7b"), s13 = model_preset("llama2-13b"),
             s70 = model_preset("llama2-70b");
  EXPECT_LT(h7->iteration(reference(s7, false)), a7->iteration(reference(s7, false)));
  EXPECT_LT(a7->iteration(reference(s7, false)), a13->iteration(reference(s13, false)));
  EXPECT_LT(a13->iteration(reference(s13, false)), a70->iteration(reference(s70, false)));
  EXPECT_EQ(a70->device_memory_bytes(), 4 * 80 * kGiB);
}

TEST(Presets, WrongModelOrNameIsAClearError) {
  try {
    make_cost_model("llama2-7b@a100-80gb", model_preset("tiny"));
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("models llama2-7b"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'tiny'"), std::string::npos) << e.what();
  }
  try {
    make_cost_model("llama2-70b@a100-80gb", model_preset("llama2-70b"));
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("llama2-70b-tp4"), std::string::npos) << e.what();
  }
  try {
    make_cost_model("llama2-7b@a100-40gb", model_preset("llama2-7b"));
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'a100-80gb'"), std::string::npos)
        << e.what();
  }
}

TEST(DloraArtifact, TimingModelUnchanged) {
  const ModelShape s = model_preset("llama2-7b");
  auto m = make_cost_model("dlora-artifact", s);
  for (int b : {1, 16, 64}) {
    EXPECT_EQ(m->iteration(reference(s, false, b)), 0.015);
    EXPECT_EQ(m->iteration(reference(s, true, b)), 0.027);
  }
  BatchFeatures prefill;
  prefill.mode = api::Mode::unmerged;
  prefill.entries = 4;
  prefill.prefill_tokens = 4000;
  EXPECT_EQ(m->iteration(prefill), 0.027);
  const auto a = adapters_of(s, {16, 64}, 2);
  auto one = m->switch_steps(nullptr, &a[0], SwitchMethod::unmerge_merge);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].kind, EventKind::merge);
  EXPECT_EQ(one[0].seconds, 0.020);
  auto off = m->switch_steps(&a[0], nullptr, SwitchMethod::unmerge_merge);
  ASSERT_EQ(off.size(), 1u);
  EXPECT_EQ(off[0].kind, EventKind::unmerge);
  EXPECT_EQ(off[0].seconds, 0.020);
  auto re = m->switch_steps(&a[0], &a[1], SwitchMethod::unmerge_merge);  // X -> Y: 10 + 10
  ASSERT_EQ(re.size(), 2u);
  EXPECT_EQ(re[0].seconds + re[1].seconds, 0.020);
  EXPECT_EQ(re[0].seconds, 0.010);
  EXPECT_EQ(m->load(a[1].bytes), 0.0);
  EXPECT_EQ(m->swap(1 << 20, true), 0.0);
  EXPECT_EQ(m->swap(1 << 20, false), 0.0);
  EXPECT_EQ(m->device_memory_bytes(), 80 * kGiB);
  EXPECT_EQ(m->bytes_per_element(), 2);
  EXPECT_EQ(m->default_pool_bytes(), 0.0);
  // Any model shape: it is a timing model, not a hardware one.
  EXPECT_EQ(make_cost_model("dlora-artifact", model_preset("tiny"))->iteration(reference(s, false)),
            0.015);
}

// 70B on four GPUs: the pool is sized from 4 x 80 GiB minus the weights, and a run with
// two replicas finishes.
TEST(Presets, Llama70bTensorParallelRuns) {
  const std::string text = R"([run]
name = "tp4"
seed = 3
[model]
preset = "llama2-70b"
[adapters]
count = 32
ranks = [8, 16, 32]
[workload]
arrival = "gamma"
cv = 1.0
rate = 20.0
num_requests = 300
popularity = { kind = "zipf", s = 1.0 }
prompt = { kind = "uniform", min = 32, max = 512 }
output = { kind = "uniform", min = 16, max = 256 }
[cluster]
replicas = 2
executor = "costmodel"
costmodel = "llama2-70b-tp4@h100-80gb"
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
)";
  const auto exps = parse_experiments(text, "tp4.toml");
  PluginRegistry registry(plugin_search_path());
  Simulation sim(exps.at(0), registry);
  const ModelShape s = model_preset("llama2-70b");
  const double weights = static_cast<double>(s.num_parameters()) * 2;
  const double block = static_cast<double>(s.kv_bytes_per_token(2)) * 16;
  EXPECT_EQ(sim.pool_blocks(), static_cast<int64_t>((4 * 80 * kGiB * 0.9 - weights) / block));
  const RunResult r = sim.run();
  int64_t finished = 0;
  for (const auto& q : r.records.requests)
    finished += q.status == static_cast<int8_t>(RequestStatus::finished);
  EXPECT_EQ(finished, 300);
  EXPECT_NE(r.device.find("4 x NVIDIA H100"), std::string::npos) << r.device;
}

}  // namespace
}  // namespace lorasched::test
