// Bad numbers (docs/hardening.md, "Bad numbers"): NaN and infinity in weights, adapters, cost
// profiles and experiment values; zero and negative rates; empty and unsorted traces. Each is
// refused with a one-line InputError naming the place (file and tensor, file:line,
// FILE:LINE:COL), never turned into a silently wrong run.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "core/checkpoint/hf_model.hpp"
#include "core/checkpoint/peft_adapter.hpp"
#include "core/cluster/simulation.hpp"
#include "core/common/error.hpp"
#include "core/config/experiment.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/model/presets.hpp"
#include "core/plugin/loader.hpp"
#include "core/workload/workload.hpp"
#include "fuzz/tiny_checkpoint.hpp"

namespace lorasched::test {
namespace {

using checkpoint::Dtype;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs f, expects an InputError whose one-line message holds every part; returns it.
template <class F>
std::string expect_input_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << "not one line: " << what;
    for (const auto& p : parts)
      EXPECT_NE(what.find(p), std::string::npos) << "lacks \"" << p << "\": " << what;
    return what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected InputError, got: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected InputError, nothing thrown";
  return {};
}

std::string value_name(float v) { return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

// ---- weights ------------------------------------------------------------------------------------

TEST(BadNumbers, NanOrInfiniteModelWeightsAreRefusedNamingFileAndTensor) {
  const ModelShape shape = fuzz::tiny_shape();
  const std::string bad = "model.layers.1.mlp.down_proj.weight";
  for (const Dtype dtype : {Dtype::F32, Dtype::F16, Dtype::BF16}) {
    for (const float v : {kNaN, kInf, -kInf}) {
      SCOPED_TRACE(std::string(checkpoint::dtype_name(dtype)) + " " + value_name(v));
      ScratchDir dir;
      write_text(dir / "model/config.json", fuzz::tiny_config_json());
      auto tensors = fuzz::model_tensors(shape);
      for (auto& t : tensors) {
        t.dtype = dtype;
        if (t.name == bad) t.values[5] = v;
      }
      checkpoint::write_safetensors(dir / "model/model.safetensors", tensors);
      expect_input_error(
          [&] { (void)load_hf_model(dir / "model"); },
          {"model.safetensors", "'" + bad + "'", "element 5 of", value_name(v), "must be finite"});
    }
  }
  // The clean model loads.
  ScratchDir dir;
  write_text(dir / "model/config.json", fuzz::tiny_config_json());
  checkpoint::write_safetensors(dir / "model/model.safetensors", fuzz::model_tensors(shape));
  EXPECT_EQ(load_hf_model(dir / "model").layers.size(), 2u);
}

TEST(BadNumbers, NanOrInfiniteAdapterWeightsAreRefusedNamingFileAndTensor) {
  const ModelShape shape = fuzz::tiny_shape();
  const std::string bad = "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight";
  for (const float v : {kNaN, kInf, -kInf}) {
    SCOPED_TRACE(value_name(v));
    ScratchDir dir;
    write_text(dir / "a/adapter_config.json", fuzz::tiny_adapter_config_json());
    auto tensors = fuzz::adapter_tensors(shape, 2);
    for (auto& t : tensors)
      if (t.name == bad) t.values.back() = v;
    checkpoint::write_safetensors(dir / "a/adapter_model.safetensors", tensors);
    expect_input_error(
        [&] { (void)load_peft_adapter(dir / "a", shape); },
        {"adapter_model.safetensors", "'" + bad + "'", value_name(v), "must be finite"});
  }
}

TEST(BadNumbers, AdapterAlphaBeyondFloatIsRefused) {
  const ModelShape shape = fuzz::tiny_shape();
  const std::string base = fuzz::tiny_adapter_config_json();
  for (const auto& [from, to, key] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"\"lora_alpha\": 4", "\"lora_alpha\": 1e39", "lora_alpha"},
           {"\"lora_alpha\": 4", "\"lora_alpha\": -1e300", "lora_alpha"},
           {"\"lora_alpha\": 4", "\"lora_alpha\": 4, \"alpha_pattern\": {\"q_proj\": 1e300}",
            "alpha_pattern"}}) {
    SCOPED_TRACE(to);
    ScratchDir dir;
    std::string cfg = base;
    cfg.replace(cfg.find(from), from.size(), to);
    write_text(dir / "a/adapter_config.json", cfg);
    checkpoint::write_safetensors(dir / "a/adapter_model.safetensors",
                                  fuzz::adapter_tensors(shape, 2));
    expect_input_error([&] { (void)load_peft_adapter(dir / "a", shape); },
                       {"adapter_config.json", key, "out of the range of a float"});
  }
}

TEST(BadNumbers, ModelConfigNumbersOutOfRangeAreRefused) {
  for (const auto& [from, to, key] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"\"rope_theta\": 10000.0", "\"rope_theta\": 1e300", "rope_theta"},
           {"\"rope_theta\": 10000.0", "\"rope_theta\": -5", "rope_theta"},
           {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e300", "rms_norm_eps"},
           {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "rms_norm_eps"}}) {
    SCOPED_TRACE(to);
    ScratchDir dir;
    std::string cfg = fuzz::tiny_config_json();
    cfg.replace(cfg.find(from), from.size(), to);
    write_text(dir / "config.json", cfg);
    expect_input_error([&] { (void)read_hf_config(dir / "config.json"); }, {"config.json", key});
  }
}

// ---- rates and other experiment values
// -------------------------------------------------------------

TEST(BadNumbers, ZeroNegativeNanAndInfiniteValuesAreRefusedAtTheirLine) {
  const std::vector<std::pair<std::string, std::string>> keys = {
      {"workload", "rate"},         {"workload", "cv"},
      {"workload", "target_rate"},  {"workload", "time_scale"},
      {"workload", "duration_s"},   {"engine", "watermark"},
      {"engine", "pool_gib"},       {"engine", "gpu_memory_utilization"},
      {"cluster", "link_gbps"},     {"cluster", "migration_interval_s"},
      {"adapters", "lora_alpha"},   {"workload.popularity", "hot_share"},
      {"workload.popularity", "s"}, {"workload.artifact", "bin_minutes"}};
  for (const auto& [table, key] : keys) {
    for (const char* v : {"nan", "+inf", "-inf", "-1.0", "0.0"}) {
      if (std::string(v) == "0.0" &&
          (key == "watermark" || key == "lora_alpha" || key == "hot_share" || key == "s"))
        continue;  // 0 is a valid value of these
      SCOPED_TRACE("[" + table + "] " + key + " = " + v);
      const bool same = table == "workload";
      const std::string text = "[workload]\nnum_requests = 5\n" +
                               (same ? std::string() : "[" + table + "]\n") + key + " = " + v +
                               "\n";
      expect_input_error([&] { (void)parse_experiments(text, "t.toml"); },
                         {same ? "t.toml:3:" : "t.toml:4:", key, "must be"});
    }
  }
  // --set overrides go through the same checks, naming the override.
  expect_input_error(
      [] {
        (void)parse_experiments("[workload]\nnum_requests = 5\n", "t.toml", {"workload.rate=nan"});
      },
      {"--set workload.rate=nan", "rate must be"});
}

TEST(BadNumbers, GenerateWorkloadRefusesBadRatesItself) {
  for (const double rate : {0.0, -2.0, std::nan(""), HUGE_VAL}) {
    WorkloadSpec spec;
    spec.rate = rate;
    spec.num_requests = 4;
    expect_input_error([&] { (void)generate_workload(spec, 2, 1); },
                       {"workload: rate must be a finite number > 0"});
  }
  WorkloadSpec spec;
  spec.arrival = "gamma";
  spec.cv = 0;
  spec.num_requests = 4;
  expect_input_error([&] { (void)generate_workload(spec, 2, 1); },
                     {"cv must be a finite number > 0"});
}

// ---- traces -------------------------------------------------------------------------------------

WorkloadSpec trace_spec(const std::string& arrival, const fs::path& file) {
  WorkloadSpec s;
  s.arrival = arrival;
  s.trace = file;
  s.prompt.kind = s.output.kind = "from-trace";
  if (arrival == "adapter-trace") s.popularity.kind = "trace";
  return s;
}

TEST(BadNumbers, EmptyTracesAreRefused) {
  ScratchDir dir;
  const std::string azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  const std::string adapter = "arrival_s,adapter,prompt_tokens,output_tokens\n";
  struct C {
    std::string arrival, text, message;
  };
  for (const C& c : std::vector<C>{{"trace", "", "empty file"},
                                   {"trace", azure, "has no requests"},
                                   {"trace", azure + "\n  \n\r\n", "has no requests"},
                                   {"adapter-trace", "", "header is ''"},
                                   {"adapter-trace", adapter, "has no requests"},
                                   {"adapter-trace", adapter + "\n\n", "has no requests"}}) {
    SCOPED_TRACE(c.arrival + ": '" + c.text + "'");
    write_text(dir / "t.csv", c.text);
    expect_input_error([&] { (void)generate_workload(trace_spec(c.arrival, dir / "t.csv"), 4, 1); },
                       {"t.csv", c.message});
  }
  // As a length trace, and as the artifact's function counts.
  write_text(dir / "t.csv", azure);
  WorkloadSpec s;
  s.num_requests = 3;
  s.prompt.kind = "trace";
  s.prompt.trace = dir / "t.csv";
  expect_input_error([&] { (void)generate_workload(s, 4, 1); }, {"t.csv", "has no requests"});
  write_text(dir / "c.csv", "function,bin0,bin1\n");
  WorkloadSpec a;
  a.arrival = "artifact";
  a.num_requests = 3;
  a.artifact.function_counts = dir / "c.csv";
  expect_input_error([&] { (void)generate_workload(a, 4, 1); }, {"c.csv", "has no functions"});
  write_text(dir / "c.csv", "function,bin0,bin1\nf,0,0\n");
  expect_input_error([&] { (void)generate_workload(a, 4, 1); }, {"c.csv", "has no invocations"});
}

TEST(BadNumbers, UnsortedTimestampsAreRefusedNamingTheLine) {
  ScratchDir dir;
  write_text(dir / "t.csv",
             "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.5,10,2\n"
             "2023-11-16 18:17:03.4999999,10,2\n");
  expect_input_error([&] { (void)generate_workload(trace_spec("trace", dir / "t.csv"), 4, 1); },
                     {"t.csv:3:", "earlier than the previous row's"});
  write_text(dir / "a.csv",
             "arrival_s,adapter,prompt_tokens,output_tokens\n0.5,0,4,4\n1.0,1,4,4\n0.75,0,4,4\n");
  expect_input_error(
      [&] { (void)generate_workload(trace_spec("adapter-trace", dir / "a.csv"), 4, 1); },
      {"a.csv:4:", "earlier than the previous row's"});
  // Equal timestamps are sorted: both requests arrive together.
  write_text(dir / "a.csv",
             "arrival_s,adapter,prompt_tokens,output_tokens\n0.5,0,4,4\n0.5,1,4,4\n");
  const auto reqs = generate_workload(trace_spec("adapter-trace", dir / "a.csv"), 4, 1);
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].arrival, reqs[1].arrival);
}

TEST(BadNumbers, NanAndInfinityInTraceNumbersAreRefused) {
  ScratchDir dir;
  for (const char* v : {"nan", "inf", "-inf", "1e400", "-1"}) {
    SCOPED_TRACE(v);
    write_text(
        dir / "a.csv",
        std::string("arrival_s,adapter,prompt_tokens,output_tokens\n0,0,4,4\n") + v + ",1,4,4\n");
    expect_input_error(
        [&] { (void)generate_workload(trace_spec("adapter-trace", dir / "a.csv"), 4, 1); },
        {"a.csv:3:", "arrival_s", "is not a finite number >= 0"});
    write_text(dir / "c.csv", std::string("function,bin0,bin1\nf,1,") + v + "\n");
    WorkloadSpec a;
    a.arrival = "artifact";
    a.num_requests = 3;
    a.artifact.function_counts = dir / "c.csv";
    expect_input_error([&] { (void)generate_workload(a, 4, 1); },
                       {"c.csv:2:", "bin1 count", "is not a finite number >= 0"});
  }
}

// ---- cost profiles
// ----------------------------------------------------------------------------------

std::string valid_profile() {
  return slurp(source_dir() / "tests/fuzz/corpus/cost_profile/valid-basic.json");
}

TEST(BadNumbers, NanAndInfinityInCostProfilesAreRefused) {
  ScratchDir dir;
  const ModelShape tiny = model_preset("tiny");
  const std::string p = valid_profile();
  ASSERT_NE(p.find("\"seconds_taken\": 1.0"), std::string::npos);
  write_text(dir / "ok.json", p);
  EXPECT_NO_THROW((void)make_cost_model((dir / "ok.json").string(), tiny));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = p;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    s.replace(at, from.size(), to);
    write_text(dir / "bad.json", s);
    return (dir / "bad.json").string();
  };
  // JSON has no NaN or Infinity: such a file is not JSON.
  for (const char* v : {"NaN", "Infinity", "-Infinity", "nan"})
    expect_input_error(
        [&] {
          (void)make_cost_model(
              with("\"seconds_taken\": 1.0", std::string("\"seconds_taken\": ") + v), tiny);
        },
        {"bad.json", "not a valid JSON profile"});
  // A number beyond double is refused by the JSON reader (it would be infinity).
  expect_input_error(
      [&] { (void)make_cost_model(with("\"seconds\": 0.001", "\"seconds\": 1e999"), tiny); },
      {"bad.json", "not a valid JSON profile", "number overflow"});
  // A finite time too large to be a measurement (it would extrapolate to infinity).
  expect_input_error(
      [&] { (void)make_cost_model(with("\"seconds\": 0.001", "\"seconds\": 1e300"), tiny); },
      {"bad.json", "profile key 'prefill[0].seconds' is 1e+300 s, more than"});
  expect_input_error(
      [&] { (void)make_cost_model(with("\"seconds\": 0.001", "\"seconds\": -0.001"), tiny); },
      {"bad.json", "prefill[0].seconds' is negative"});
}

TEST(BadNumbers, HugeMemoryInACostProfileIsRefusedAsAPoolSize) {
  // device_memory_bytes / default_pool_bytes are finite but give more blocks than an int64
  // holds: refused with the pool's message (the conversion used to be undefined behaviour).
  ScratchDir dir;
  PluginRegistry registry(plugin_search_path({}));
  auto with = [](std::string p, const std::string& from, const std::string& to) {
    p.replace(p.find(from), from.size(), to);
    return p;
  };
  const std::string pool = "\"default_pool_bytes\": 268435456.0";
  const std::string memory = "\"device_memory_bytes\": 300000000.0";
  for (const std::string& p :
       {with(valid_profile(), pool, "\"default_pool_bytes\": 1e300"),
        // No default pool: device memory x utilisation - weights, from 1e300 bytes.
        with(with(valid_profile(), pool, "\"default_pool_bytes\": 0"), memory,
             "\"device_memory_bytes\": 1e300")}) {
    write_text(dir / "huge.json", p);
    const std::string text =
        "[workload]\nnum_requests = 5\n[cluster]\nexecutor = \"costmodel\"\n"
        "costmodel = \"" +
        (dir / "huge.json").string() + "\"\n";
    const auto exps = parse_experiments(text, "t.toml");
    expect_input_error([&] { Simulation sim(exps.at(0), registry, /*dry_run=*/true); },
                       {"t.toml", "[engine] the pool would hold", "it needs 1 to 2^31-1"});
  }
}

// ---- plugin parameters
// ------------------------------------------------------------------------------

TEST(BadNumbers, NanAndInfinityInPluginParametersAreRefusedAtTheirLine) {
  PluginRegistry registry(plugin_search_path({}));
  for (const char* v : {"nan", "+nan", "-nan", "inf", "+inf", "-inf"}) {
    SCOPED_TRACE(v);
    const std::string text =
        "[workload]\nnum_requests = 5\n[cluster]\nexecutor = \"costmodel\"\n"
        "costmodel = \"dlora-artifact\"\n[threshold]\nplugin = \"fixed\"\nalpha = " +
        std::string(v) + "\n";
    const auto exps = parse_experiments(text, "t.toml");  // TOML allows nan and inf
    expect_input_error(
        [&] { Simulation sim(exps.at(0), registry, /*dry_run=*/true); },
        {"t.toml:8:", "[threshold] alpha = ", "is out of range for threshold 'fixed'"});
  }
}

}  // namespace
}  // namespace lorasched::test
