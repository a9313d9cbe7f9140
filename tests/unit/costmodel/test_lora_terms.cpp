// The cost model's unmerged path, mixed batches, fused switch and regime scaling (issue 18.6):
// batch features counted by hand, the presets' LoRA terms against their formula, the two
// regimes' calibration, one-pass switches, and costmodel_scale hitting its targets.
#include <gtest/gtest.h>

#include <cmath>

#include "core/common/error.hpp"
#include "core/exec/costmodel_scale.hpp"
#include "core/exec/presets.hpp"
#include "costmodel_util.hpp"

namespace lorasched::test {
namespace {

// adapter 0: rank 8, 1: rank 16, 2: rank 64 (7B shapes, fp16).
std::vector<AdapterInfo> three(const ModelShape& s) { return adapters_of(s, {8, 16, 64}, 2); }

// Adapter 1 merged; three decodes of adapter 1, a 10-token prefill of adapter 0, two decodes of
// adapter 2 and one of adapter 0.
std::vector<SeqSpec> mixed_layout() {
  return {{1, false, 100}, {1, false, 100}, {1, false, 100}, {0, true, 10},
          {2, false, 200}, {2, false, 200}, {0, false, 50}};
}

TEST(BatchFeatures, MixedBatchCountsTwoPassesOverTheOtherAdaptersRows) {
  const auto ad = three(model_preset("llama2-7b"));
  const BatchFeatures m = batch_features(make_batch(api::Mode::mixed, 1, mixed_layout()), ad);
  EXPECT_EQ(m.prefill_tokens, 10);
  EXPECT_EQ(m.decode_seqs, 6);
  EXPECT_EQ(m.lora_tokens, 10 + 2 + 1);  // the merged adapter's 3 rows get no LoRA term
  EXPECT_EQ(m.lora_token_rank, 10 * (8 + 16) + 2 * (64 + 16) + 1 * (8 + 16));
  EXPECT_EQ(m.lora_passes, 2);
  EXPECT_EQ(m.lora_segments, 2 * 2);  // adapters 0 and 2, in both passes
  EXPECT_EQ(m.lora_segment_tokens(), 2 * 13);
  EXPECT_EQ(m.distinct_adapters, 3);  // 0, 2 and the merged 1 (read for the minus term)
  EXPECT_EQ(m.lora_adapter_rank, 8 + 64 + 16);

  const BatchFeatures u =
      batch_features(make_batch(api::Mode::unmerged, api::kNoAdapter, mixed_layout()), ad);
  EXPECT_EQ(u.lora_tokens, 16);
  EXPECT_EQ(u.lora_token_rank, 3 * 16 + 10 * 8 + 2 * 64 + 1 * 8);
  EXPECT_EQ(u.lora_passes, 1);
  EXPECT_EQ(u.lora_segments, 3);
  EXPECT_EQ(u.distinct_adapters, 3);
  EXPECT_EQ(u.lora_adapter_rank, 8 + 16 + 64);

  const BatchFeatures only_merged =
      batch_features(make_batch(api::Mode::merged, 1, {{1, false, 100}, {1, true, 20}}), ad);
  EXPECT_EQ(only_merged.lora_tokens, 0);
  EXPECT_EQ(only_merged.lora_passes, 0);
  EXPECT_EQ(only_merged.lora_segments, 0);
  EXPECT_EQ(only_merged.distinct_adapters, 0);
}

// LoRA parameters per unit of rank on every target module of Llama-2-7B, by hand: q, k, v, o
// are 4096 x 4096 (4096 + 4096 per rank), gate and up 11008 x 4096 and down 4096 x 11008
// (15104 per rank), 32 layers.
constexpr double k7bParamsPerRank = 32.0 * (4 * 8192 + 3 * 15104);

// The LoRA part of a 7B/A100 iteration by the formula of docs/costmodel.md.
double lora_formula(const BatchFeatures& f, const LoraTerms& terms) {
  const double eta = roofline_calibration().efficiency;
  const double bytes = k7bParamsPerRank * 2 * static_cast<double>(f.lora_adapter_rank);
  const double flops = 2 * k7bParamsPerRank * static_cast<double>(f.lora_token_rank);
  const double roof = std::max(bytes / 2.039e12, flops / 312e12) / eta;
  const double segments_per_pass = static_cast<double>(f.lora_segments) / f.lora_passes;
  return roof + 32 * 7 * (terms.per_pass + terms.per_segment * segments_per_pass);
}

TEST(Presets, UnmergedPathIsPricedByExplicitTerms) {
  const ModelShape s = model_preset("llama2-7b");
  const auto ad = three(s);
  const auto& cal = roofline_calibration();
  for (LoraKernels k : {LoraKernels::artifact, LoraKernels::sgmv}) {
    auto m = make_hardware_preset("llama2-7b@a100-80gb", s, k);
    for (api::Mode mode : {api::Mode::unmerged, api::Mode::mixed}) {
      const BatchFeatures f = batch_features(
          make_batch(mode, mode == api::Mode::mixed ? 1 : api::kNoAdapter, mixed_layout()), ad);
      const IterationTime t = m->iteration_time(f);
      EXPECT_NEAR(t.lora, lora_formula(f, cal.terms(k)), 1e-12) << int(k) << " " << int(mode);
      // The base part is the same batch on merged weights with no LoRA work.
      BatchFeatures plain = f;
      plain.lora_passes = plain.lora_segments = plain.distinct_adapters = 0;
      plain.lora_tokens = plain.lora_token_rank = plain.lora_adapter_rank = 0;
      EXPECT_EQ(t.base, m->iteration(plain));
    }
  }
}

TEST(Presets, RegimesAreCalibratedWhereTheirSourcesMeasured) {
  const ModelShape s = model_preset("llama2-7b");
  const auto& cal = roofline_calibration();
  // Artifact: a fixed cost per segment, so that dLoRA's reference batch takes its 27 ms.
  EXPECT_EQ(cal.artifact.per_pass, 0);
  EXPECT_NEAR(cal.artifact.per_segment, 3.28e-6, 0.05e-6);
  auto art = make_hardware_preset("llama2-7b@a100-80gb", s, LoraKernels::artifact);
  EXPECT_NEAR(art->iteration(reference_batch(true)), 0.027, 1e-12);
  // SGMV: Punica's 2 ms per token over 32 layers x 7 modules, one pass each.
  EXPECT_EQ(cal.sgmv.per_pass, 0.002 / (32 * 7));
  EXPECT_EQ(cal.sgmv.per_segment, 0);
  auto sgmv = make_hardware_preset("llama2-7b@a100-80gb", s, LoraKernels::sgmv);
  const double merged = sgmv->iteration(reference_batch(false));
  const double unmerged = sgmv->iteration(reference_batch(true));
  EXPECT_NEAR(unmerged - merged, 0.002 + lora_formula(reference_batch(true), LoraTerms{}), 1e-12);
  EXPECT_EQ(merged, art->iteration(reference_batch(false)));  // regimes differ in LoRA only
  const double ratio = unmerged / merged;
  EXPECT_GT(ratio, 1.1);
  EXPECT_LT(ratio, 1.35);
}

// The merged adapter no longer counts as one more segment: a mixed batch's LoRA part is the
// unmerged batch's less one segment's overhead (artifact regime; the weights read are the same
// adapters' and the token-rank work is below the memory roofline at decode), and no more than it
// in the SGMV regime (no per-segment cost: the two differ only in the merged adapter's
// token-rank work, which the memory-bound roofline hides here).
TEST(Presets, MixedBatchPaysOnlyForTheOtherAdaptersRows) {
  const ModelShape s = model_preset("llama2-7b");
  const auto ad = three(s);
  for (LoraKernels k : {LoraKernels::artifact, LoraKernels::sgmv}) {
    auto m = make_hardware_preset("llama2-7b@a100-80gb", s, k);
    const double mixed =
        m->iteration_time(batch_features(make_batch(api::Mode::mixed, 1, mixed_layout()), ad)).lora;
    const double unmerged =
        m->iteration_time(
             batch_features(make_batch(api::Mode::unmerged, api::kNoAdapter, mixed_layout()), ad))
            .lora;
    const double segment = 32 * 7 * roofline_calibration().terms(k).per_segment;
    if (k == LoraKernels::artifact)
      EXPECT_NEAR(mixed, unmerged - segment, 1e-12);
    else
      EXPECT_LE(mixed, unmerged);
  }
}

TEST(Presets, FusedSwitchIsOnePass) {
  const ModelShape s = model_preset("llama2-7b");
  const auto ad = three(s);
  auto m = make_hardware_preset("llama2-7b@a100-80gb", s);
  const auto fused = m->switch_steps(&ad[0], &ad[2], SwitchMethod::fused);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0].kind, EventKind::adapter_switch);
  EXPECT_EQ(fused[0].adapter, 2);
  EXPECT_EQ(fused[0].from, 0);
  EXPECT_EQ(fused[0].bytes, ad[0].bytes + ad[2].bytes);
  // One read and write of the target weights (7B: 32 x (4 x 4096^2 + 3 x 4096 x 11008) fp16)
  // plus both adapters, against 2 (r0 + r2) FLOPs per target weight.
  const double eta = roofline_calibration().efficiency;
  const double target = 32.0 * (4.0 * 4096 * 4096 + 3.0 * 4096 * 11008);
  const double bytes = 2 * target * 2 + static_cast<double>(ad[0].bytes + ad[2].bytes);
  const double flops = 2.0 * (8 + 64) * target;
  EXPECT_NEAR(fused[0].seconds, std::max(bytes / 2.039e12, flops / 312e12) / eta, 1e-12);
  const auto plain = m->switch_steps(&ad[0], &ad[2], SwitchMethod::unmerge_merge);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[0].kind, EventKind::unmerge);
  EXPECT_EQ(plain[1].kind, EventKind::merge);
  // Two passes: the fused one saves a read and a write of every target weight.
  EXPECT_LT(fused[0].seconds, 0.6 * (plain[0].seconds + plain[1].seconds));
  // Merging into clean weights or unmerging is one pass whichever method.
  EXPECT_EQ(m->switch_steps(nullptr, &ad[1], SwitchMethod::fused).size(), 1u);
  EXPECT_EQ(m->switch_steps(&ad[1], nullptr, SwitchMethod::fused)[0].kind, EventKind::unmerge);
}

TEST(DloraArtifact, FusedSwitchIsOneTwentyMsStep) {
  const ModelShape s = model_preset("llama2-7b");
  const auto ad = three(s);
  auto m = make_cost_model("dlora-artifact", s);
  const auto steps = m->switch_steps(&ad[0], &ad[1], SwitchMethod::fused);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].kind, EventKind::adapter_switch);
  EXPECT_EQ(steps[0].seconds, 0.020);
  EXPECT_EQ(m->iteration(reference_batch(true)), 0.027);
  EXPECT_EQ(m->iteration_time(reference_batch(true)).base, 0.015);
}

// costmodel_scale puts the reference point where asked, on every kind of model.
TEST(CostModelScale, HitsTheRatioAndTheSwitchCost) {
  TempDir dir;
  const fs::path profile = dir / "tiny.json";
  write_profile(synthetic_profile(), profile);
  struct Case {
    std::string spec;
    ModelShape shape;
  };
  for (const Case& c : {Case{"dlora-artifact", model_preset("llama2-7b")},
                        Case{"llama2-7b@a100-80gb", model_preset("llama2-7b")},
                        Case{"llama2-13b@h100-80gb", model_preset("llama2-13b")},
                        Case{profile.string(), model_preset("tiny")}}) {
    for (SwitchMethod method : {SwitchMethod::fused, SwitchMethod::unmerge_merge}) {
      for (double ratio : {1.05, 1.3, 1.8}) {
        for (double iters : {0.25, 1.0, 3.0}) {
          CostModelOptions o;
          o.unmerged_ratio = ratio;
          o.switch_iterations = iters;
          o.switch_method = method;
          auto m = make_cost_model(c.spec, c.shape, o);
          const double merged = m->iteration(reference_batch(false));
          EXPECT_NEAR(m->iteration(reference_batch(true)) / merged, ratio, 1e-9) << c.spec;
          const AdapterInfo a = reference_adapter(c.shape, m->bytes_per_element(), 0);
          const AdapterInfo b = reference_adapter(c.shape, m->bytes_per_element(), 1);
          double sw = 0;
          for (const CostStep& st : m->switch_steps(&a, &b, method)) sw += st.seconds;
          EXPECT_NEAR(sw / merged, iters, 1e-9) << c.spec;
          // The merged iteration itself is the inner model's.
          EXPECT_EQ(merged, make_cost_model(c.spec, c.shape)->iteration(reference_batch(false)));
        }
      }
    }
  }
  // One knob alone leaves the other quantity as it was.
  CostModelOptions only_ratio;
  only_ratio.unmerged_ratio = 1.5;
  const ModelShape s7 = model_preset("llama2-7b");
  auto m = make_cost_model("llama2-7b@a100-80gb", s7, only_ratio);
  auto plain = make_cost_model("llama2-7b@a100-80gb", s7);
  const auto ad = three(s7);
  EXPECT_EQ(m->switch_steps(&ad[0], &ad[1], SwitchMethod::fused)[0].seconds,
            plain->switch_steps(&ad[0], &ad[1], SwitchMethod::fused)[0].seconds);
  EXPECT_EQ(m->load(ad[0].bytes), plain->load(ad[0].bytes));
}

TEST(CostModelScale, BadRequestsAreClearErrors) {
  const ModelShape s = model_preset("llama2-7b");
  CostModelOptions sgmv;
  sgmv.lora_kernels = LoraKernels::sgmv;
  expect_input_error([&] { make_cost_model("dlora-artifact", s, sgmv); },
                     {"dlora-artifact", "costmodel_lora", "hardware presets"});
  // A ratio below what the unmerged batch's base part costs cannot be reached.
  class NoLora final : public CostModel {
   public:
    std::string describe() const override { return "no-lora"; }
    IterationTime iteration_time(const BatchFeatures&) const override { return {0.01, 0}; }
    std::vector<CostStep> switch_steps(const AdapterInfo*, const AdapterInfo*,
                                       SwitchMethod) const override {
      return {};
    }
    double load(int64_t) const override { return 0; }
    double swap(int64_t, bool) const override { return 0; }
    double device_memory_bytes() const override { return 1; }
    int bytes_per_element() const override { return 2; }
    const ModelShape& shape() const override { return shape_; }
    ModelShape shape_ = model_preset("tiny");
  };
  expect_input_error(
      [&] { scale_cost_model(std::make_unique<NoLora>(), 1.3, std::nullopt, SwitchMethod::fused); },
      {"unmerged_ratio", "no LoRA cost"});
  expect_input_error(
      [&] { scale_cost_model(std::make_unique<NoLora>(), std::nullopt, 1.0, SwitchMethod::fused); },
      {"switch_iterations", "no switch cost"});
}

}  // namespace
}  // namespace lorasched::test
