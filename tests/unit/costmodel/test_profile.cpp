// Profiles: JSON round trip, the real profiler (quick grid, through `lorasched profile`),
// predictions equal to the profile at its points and monotone between them, and clear
// errors for bad or mismatched profiles.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/cli/commands.hpp"
#include "core/common/error.hpp"
#include "core/metrics/h5.hpp"
#include "costmodel_util.hpp"

namespace lorasched::test {
namespace {

using json = nlohmann::ordered_json;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// 4 adapters of each rank 8, 16, 64: ids 0-3 rank 8, 4-7 rank 16, 8-11 rank 64.
struct Fixture {
  Profile p = synthetic_profile();
  std::vector<AdapterInfo> adapters;
  std::map<int, std::vector<api::AdapterId>> by_rank;
  std::shared_ptr<const CostModel> model;
  Fixture() {
    std::vector<int> ranks;
    for (int r : {8, 16, 64})
      for (int i = 0; i < 4; ++i) ranks.push_back(r);
    adapters = adapters_of(p.shape, ranks, 4);
    for (const auto& a : adapters) by_rank[a.rank].push_back(a.id);
    model = profile_cost_model(p, "synthetic.json", p.shape);
  }
  double prefill(int P, int k) const {
    return model->iteration(batch_features(
        make_batch(api::Mode::merged, 0, prefill_layout(P, k, [](int) { return 0; })), adapters));
  }
  double decode(int B, int C) const {
    std::vector<SeqSpec> seqs(static_cast<size_t>(B), SeqSpec{0, false, C});
    return model->iteration(batch_features(make_batch(api::Mode::merged, 0, seqs), adapters));
  }
  double lora(int P, int D, int r) const {
    const auto& ids = by_rank.at(r);
    return model->iteration(batch_features(
        make_batch(api::Mode::unmerged, api::kNoAdapter,
                   prefill_layout(P, D, [&](int i) { return ids[static_cast<size_t>(i)]; })),
        adapters));
  }
};

TEST(Profile, JsonRoundTripKeepsEveryNumber) {
  const Profile p = synthetic_profile();
  const std::string text = profile_to_json(p);
  const Profile q = profile_from_json(text, "mem.json");
  EXPECT_EQ(profile_to_json(q), text);
  ASSERT_EQ(q.prefill.size(), p.prefill.size());
  for (size_t i = 0; i < p.prefill.size(); ++i) {
    EXPECT_EQ(q.prefill[i].m.seconds, p.prefill[i].m.seconds);  // bit-exact doubles
    EXPECT_EQ(q.prefill[i].m.samples, p.prefill[i].m.samples);
  }
  ASSERT_EQ(q.lora.size(), p.lora.size());
  EXPECT_EQ(q.lora.back().m.seconds, p.lora.back().m.seconds);
  EXPECT_EQ(q.shape.hidden_size, p.shape.hidden_size);
  EXPECT_EQ(q.shape.rms_norm_eps, p.shape.rms_norm_eps);
  EXPECT_EQ(q.machine.cpu_model, "Test CPU");
  EXPECT_EQ(q.grid.prefill_seqs, p.grid.prefill_seqs);
  EXPECT_EQ(q.swap_in.back().bytes, p.swap_in.back().bytes);
  EXPECT_EQ(q.device_memory_bytes, p.device_memory_bytes);
}

// The real profiler on the cpu executor, through the CLI command, quick grid: the file
// reads back to the same numbers, has every part, and its model reproduces its points.
TEST(Profile, QuickCpuProfileRoundTripsThroughTheFile) {
  TempDir dir;
  ProfileOptions o;
  o.model = "tiny";
  o.ranks = {8, 16};
  o.threads = 1;
  o.quick = true;
  o.repeats = 1;
  o.output = (dir / "p.json").string();
  ASSERT_EQ(cmd_profile(o), 0);
  const std::string text = slurp(o.output);
  const Profile p = read_profile(o.output);
  EXPECT_EQ(profile_to_json(p), text);
  EXPECT_EQ(p.machine.executor, "cpu");
  EXPECT_EQ(p.machine.threads, 1);
  EXPECT_FALSE(p.machine.cpu_model.empty());
  EXPECT_EQ(p.shape.name, "tiny");
  EXPECT_EQ(p.element_bytes, 4);
  EXPECT_FALSE(p.prefill.empty());
  EXPECT_FALSE(p.decode.empty());
  EXPECT_EQ(p.lora.size(), 2 * p.prefill.size());
  EXPECT_EQ(p.merge.size(), 2u);
  EXPECT_EQ(p.load.size(), 2u);
  EXPECT_FALSE(p.swap_in.empty());
  for (const auto& x : p.decode) EXPECT_GT(x.m.seconds, 0);

  auto model = make_cost_model(o.output, model_preset("tiny"));
  const auto adapters = adapters_of(p.shape, {8}, 4);
  for (const auto& x : p.decode) {
    std::vector<SeqSpec> seqs(static_cast<size_t>(x.batch), SeqSpec{0, false, x.context});
    EXPECT_DOUBLE_EQ(
        model->iteration(batch_features(make_batch(api::Mode::merged, 0, seqs), adapters)),
        x.m.seconds);
  }
  EXPECT_EQ(model->bytes_per_element(), 4);
  EXPECT_EQ(model->default_pool_bytes(), 0.25 * 1024 * 1024 * 1024);
}

TEST(ProfileModel, EqualsTheProfileAtMeasuredPoints) {
  Fixture f;
  for (const auto& x : f.p.prefill)
    EXPECT_EQ(f.prefill(x.tokens, x.seqs), x.m.seconds) << x.tokens << "/" << x.seqs;
  for (const auto& x : f.p.decode)
    EXPECT_EQ(f.decode(x.batch, x.context), x.m.seconds) << x.batch << "/" << x.context;
  for (const auto& x : f.p.lora)
    EXPECT_NEAR(f.lora(x.tokens, x.adapters, x.rank), x.m.seconds, 1e-15)
        << x.tokens << "/" << x.adapters << "/" << x.rank;
  for (const auto& x : f.p.merge) {
    AdapterInfo a;
    a.bytes = x.bytes;
    auto steps = f.model->switch_steps(nullptr, &a, SwitchMethod::fused);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].kind, EventKind::merge);
    EXPECT_EQ(steps[0].seconds, x.m.seconds);
  }
  for (const auto& x : f.p.unmerge) {
    AdapterInfo a;
    a.bytes = x.bytes;
    auto steps = f.model->switch_steps(&a, nullptr, SwitchMethod::fused);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].kind, EventKind::unmerge);
    EXPECT_EQ(steps[0].seconds, x.m.seconds);
  }
  for (const auto& x : f.p.load) EXPECT_EQ(f.model->load(x.bytes), x.m.seconds);
  for (const auto& x : f.p.swap_out) EXPECT_EQ(f.model->swap(x.bytes, false), x.m.seconds);
  for (const auto& x : f.p.swap_in) EXPECT_EQ(f.model->swap(x.bytes, true), x.m.seconds);
}

// Between two neighbouring grid values the prediction moves monotonically from one
// measured value to the other.
template <class F>
void expect_monotone_between(double y0, double y1, int x0, int x1, F at) {
  double prev = y0;
  for (int x = x0 + 1; x < x1; ++x) {
    const double y = at(x);
    EXPECT_GE(y, std::min(y0, y1) - 1e-15) << x;
    EXPECT_LE(y, std::max(y0, y1) + 1e-15) << x;
    if (y1 >= y0)
      EXPECT_GE(y, prev - 1e-15) << x;
    else
      EXPECT_LE(y, prev + 1e-15) << x;
    prev = y;
  }
}

TEST(ProfileModel, MonotoneBetweenMeasuredPoints) {
  Fixture f;
  const auto& g = f.p.grid;
  for (int k : {1, 2, 4})
    for (size_t i = 0; i + 1 < g.prefill_tokens.size(); ++i) {
      const int P0 = std::max(g.prefill_tokens[i], k), P1 = g.prefill_tokens[i + 1];
      if (P0 >= P1) continue;
      expect_monotone_between(f.prefill(P0, k), f.prefill(P1, k), P0, P1,
                              [&](int P) { return f.prefill(P, k); });
    }
  for (int B : g.decode_batch)
    for (size_t i = 0; i + 1 < g.decode_context.size(); ++i) {
      const int C0 = g.decode_context[i], C1 = g.decode_context[i + 1];
      expect_monotone_between(f.decode(B, C0), f.decode(B, C1), C0, C1,
                              [&](int C) { return f.decode(B, C); });
    }
  for (int C : g.decode_context)
    for (size_t i = 0; i + 1 < g.decode_batch.size(); ++i) {
      const int B0 = g.decode_batch[i], B1 = g.decode_batch[i + 1];
      expect_monotone_between(f.decode(B0, C), f.decode(B1, C), B0, B1,
                              [&](int B) { return f.decode(B, C); });
    }
  for (int r : {8, 16, 64})
    for (int D : {1, 2, 4})
      for (size_t i = 0; i + 1 < g.prefill_tokens.size(); ++i) {
        const int T0 = std::max(g.prefill_tokens[i], D), T1 = g.prefill_tokens[i + 1];
        if (T0 >= T1) continue;
        expect_monotone_between(f.lora(T0, D, r), f.lora(T1, D, r), T0, T1,
                                [&](int T) { return f.lora(T, D, r); });
      }
  // Sizes: interpolated in bytes.
  for (size_t i = 0; i + 1 < f.p.merge.size(); ++i) {
    const double b0 = static_cast<double>(f.p.merge[i].bytes),
                 b1 = static_cast<double>(f.p.merge[i + 1].bytes);
    const double mid = f.model->load(static_cast<int64_t>((b0 + b1) / 2));
    EXPECT_GT(mid, f.p.load[i].m.seconds);
    EXPECT_LT(mid, f.p.load[i + 1].m.seconds);
  }
}

TEST(ProfileModel, CombinesPrefillDecodeAndLora) {
  Fixture f;
  // A mixed batch: prefill part + decode part - the shared overhead (median of the mixed
  // points' 5e-4 and 7e-4 = 6e-4).
  std::vector<SeqSpec> seqs = prefill_layout(16, 1, [](int) { return 0; });
  for (int i = 0; i < 4; ++i) seqs.push_back({0, false, 64});
  const double t =
      f.model->iteration(batch_features(make_batch(api::Mode::merged, 0, seqs), f.adapters));
  EXPECT_NEAR(t, t_prefill(16, 1) + t_decode(4, 64) - 6e-4, 1e-12);
  // Unmerged decode batch: decode + LoRA extra of (D, T = B tokens, rank).
  std::vector<SeqSpec> dec;
  for (int i = 0; i < 4; ++i) dec.push_back({f.by_rank[16][static_cast<size_t>(i % 2)], false, 64});
  const double u = f.model->iteration(
      batch_features(make_batch(api::Mode::unmerged, api::kNoAdapter, dec), f.adapters));
  EXPECT_NEAR(u, t_decode(4, 64) + t_lora_extra(4, 2, 16), 1e-12);
  // The executor: a re-merge is the unmerge of one adapter and the merge of the other.
  CostModelExecutor ex(f.model, f.adapters);
  const auto steps = ex.switch_weights(0, 8, SwitchMethod::unmerge_merge);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].kind, EventKind::unmerge);
  EXPECT_EQ(steps[0].seconds, f.p.unmerge[0].m.seconds);
  EXPECT_EQ(steps[1].kind, EventKind::merge);
  EXPECT_EQ(steps[1].seconds, f.p.merge[2].m.seconds);
  ex.set_block_bytes(f.p.block_bytes);
  const std::vector<int32_t> blocks(16, 0);
  EXPECT_EQ(ex.swap_out(1, blocks).seconds, f.p.swap_out[1].m.seconds);
  EXPECT_EQ(ex.swap_in(1, blocks).seconds, f.p.swap_in[1].m.seconds);
}

TEST(ProfileErrors, OtherModelShapeNamesFileAndField) {
  TempDir dir;
  const fs::path file = dir / "tiny.json";
  write_profile(synthetic_profile(), file);
  expect_input_error(
      [&] { make_cost_model(file.string(), model_preset("small")); },
      {file.string(), "vocab_size 2048 vs 8192", "hidden_size 256 vs 1024", "tiny", "small"});
  ModelShape s = model_preset("tiny");
  s.num_kv_heads = 8;
  expect_input_error([&] { make_cost_model(file.string(), s); }, {file.string(), "num_kv_heads"});
}

TEST(ProfileErrors, MissingOrCorruptFieldsNameFileAndKey) {
  TempDir dir;
  const json good = json::parse(profile_to_json(synthetic_profile()));
  auto try_json = [&](const json& j, const std::vector<std::string>& parts) {
    const fs::path file = dir / "bad.json";
    write_file(file, j.dump());
    expect_input_error([&] { make_cost_model(file.string(), model_preset("tiny")); }, parts);
  };
  {
    json j = good;
    j.erase("decode");
    try_json(j, {"bad.json", "'decode'", "missing"});
  }
  {
    json j = good;
    j["decode"][1]["seconds"] = "fast";
    try_json(j, {"bad.json", "decode[1].seconds", "not a number"});
  }
  {
    json j = good;
    j["model"].erase("num_layers");
    try_json(j, {"bad.json", "model.num_layers", "missing"});
  }
  {
    json j = good;
    j["merge"][0]["seconds"] = -1.0;
    try_json(j, {"bad.json", "merge[0].seconds", "negative"});
  }
  {
    json j = good;
    j["version"] = 2;
    try_json(j, {"bad.json", "version 2", "version 1"});
  }
  {
    json j = good;
    j["format"] = "something-else";
    try_json(j, {"bad.json", "not a lorasched profile"});
  }
  {  // a LoRA point without the prefill point it is measured against
    json j = good;
    j["prefill"].erase(0);
    try_json(j, {"bad.json", "'lora' point tokens=1 adapters=1", "no 'prefill' point"});
  }
  {
    json j = good;
    j["decode"] = json::array();
    try_json(j, {"bad.json", "'decode' has no points"});
  }
  {
    json j = good;
    j["decode"].push_back(j["decode"][0]);
    try_json(j, {"bad.json", "'decode' has two points at batch=1 context=16"});
  }
  const fs::path corrupt = dir / "corrupt.json";
  write_file(corrupt, profile_to_json(synthetic_profile()).substr(0, 200));
  expect_input_error([&] { make_cost_model(corrupt.string(), model_preset("tiny")); },
                     {"corrupt.json", "not a valid JSON"});
  expect_input_error(
      [&] { make_cost_model((dir / "missing.json").string(), model_preset("tiny")); },
      {"missing.json", "does not exist", "lorasched profile"});
  expect_input_error([&] { make_cost_model("dlora-artefact", model_preset("tiny")); },
                     {"unknown cost model", "did you mean 'dlora-artifact'"});
}

}  // namespace
}  // namespace lorasched::test

namespace lorasched::test {
namespace {

// `lorasched report`'s fidelity section: a costmodel run against the cpu run of the same
// workload; nothing for files without such a pair.
TEST(Fidelity, ReportSectionComparesTheRunsOfOneWorkload) {
  auto make_run = [](const std::string& executor, double latency, double duration) {
    StoredRun r;
    r.group = executor == "cpu" ? "000" : "001";
    r.attrs.label = executor;
    r.attrs.executor = executor;
    r.attrs.seed = 7;
    for (int i = 0; i < 4; ++i) {
      RequestRecord q;
      q.id = i;
      q.arrival = 0.5 * i;
      q.prompt_tokens = 10 + i;
      r.records.requests.push_back(q);
    }
    IterationRecord it;
    it.duration = duration;
    r.records.iterations = {it, it};
    r.summary.latency_mean = latency;
    r.summary.latency_p90 = 2 * latency;
    r.summary.throughput_rps = 4;
    r.summary.throughput_tokens = 40;
    r.summary.iterations = 2;
    return r;
  };
  std::vector<StoredRun> runs = {make_run("cpu", 1.0, 0.010), make_run("costmodel", 1.03, 0.0095)};
  std::ostringstream out;
  print_fidelity(out, runs);
  const std::string s = out.str();
  EXPECT_NE(s.find("fidelity: costmodel run 'costmodel' against cpu run 'cpu' (4 requests)"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("+3.0%"), std::string::npos) << s;  // latency mean and P90
  EXPECT_NE(s.find("-5.0%"), std::string::npos) << s;  // iteration time

  runs[1].records.requests[2].arrival = 9;  // another workload: no section
  std::ostringstream none;
  print_fidelity(none, runs);
  EXPECT_EQ(none.str(), "");
}

}  // namespace
}  // namespace lorasched::test
