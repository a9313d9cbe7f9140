// Helpers for the cost-model tests: a synthetic profile with known numbers, batches of a
// given layout, a scratch directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/common/error.hpp"
#include "core/exec/costmodel.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/exec/profile.hpp"
#include "core/exec/profile_grid.hpp"
#include "core/exec/profile_json.hpp"
#include "core/exec/profile_model.hpp"
#include "core/exec/profiler.hpp"
#include "core/model/presets.hpp"

namespace lorasched::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "test";
    path_ = fs::path(testing::TempDir()) /
            ("lorasched_cost_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& f) const { return path_ / f; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Expects `f` to throw InputError whose message contains every one of `parts`.
template <class F>
void expect_input_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

inline void write_file(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// Times with shapes like the real ones but not linear (so interpolation is tested), all
// distinct.
inline double t_prefill(int P, int k) { return 1e-3 + 2e-5 * P + 3e-8 * P * P / k + 1e-5 * k; }
inline double t_decode(int B, int C) {
  return 8e-4 + 5e-5 * B + 1e-7 * B * C + 1e-6 * std::sqrt(C);
}
inline double t_lora_extra(int P, int D, int r) {
  return 4e-5 * D + 2e-8 * P * r + 1e-6 * std::sqrt(r);
}

inline Profile synthetic_profile() {
  Profile p;
  p.machine = {"testhost", "Test CPU", 1, "cpu", "CPU (1 threads)"};
  p.date = "2024-01-01T00:00:00Z";
  p.shape = model_preset("tiny");
  p.element_bytes = 4;
  p.block_size = 16;
  p.block_bytes = static_cast<int64_t>(p.shape.kv_bytes_per_token(4)) * 16;
  p.default_pool_bytes = 256.0 * 1024 * 1024;
  p.device_memory_bytes = p.default_pool_bytes + static_cast<double>(p.shape.num_parameters()) * 4;
  p.grid.prefill_tokens = {1, 4, 16, 64};
  p.grid.prefill_seqs = {1, 2, 4};
  p.grid.decode_batch = {1, 4, 16};
  p.grid.decode_context = {16, 64, 256};
  p.grid.ranks = {8, 16, 64};
  p.grid.swap_blocks = {1, 16};
  p.grid.max_kv_tokens = 8192;
  p.grid.repeats = 3;
  p.grid.warmup = 1;
  auto m = [](double s) { return Measurement{s, {s * 0.99, s, s * 1.02}}; };
  for (int P : p.grid.prefill_tokens)
    for (int k : p.grid.prefill_seqs)
      if (k <= P) p.prefill.push_back({P, k, m(t_prefill(P, k))});
  for (int B : p.grid.decode_batch)
    for (int C : p.grid.decode_context) p.decode.push_back({B, C, m(t_decode(B, C))});
  for (int r : p.grid.ranks)
    for (const auto& x : p.prefill)
      p.lora.push_back({x.tokens, x.seqs, r, m(x.m.seconds + t_lora_extra(x.tokens, x.seqs, r))});
  p.mixed.push_back({16, 1, 4, 64, m(t_prefill(16, 1) + t_decode(4, 64) - 5e-4)});
  p.mixed.push_back({64, 2, 16, 16, m(t_prefill(64, 2) + t_decode(16, 16) - 7e-4)});
  for (int r : p.grid.ranks) {
    const int64_t bytes = lora_parameters(p.shape, r) * 4;
    p.merge.push_back({r, bytes, m(1e-3 + 1e-10 * static_cast<double>(bytes))});
    p.unmerge.push_back({r, bytes, m(1.1e-3 + 1e-10 * static_cast<double>(bytes))});
    p.load.push_back({r, bytes, m(1e-5 + 1e-11 * static_cast<double>(bytes))});
  }
  for (int n : p.grid.swap_blocks) {
    p.swap_out.push_back({n, n * p.block_bytes, m(2e-6 + 3e-7 * n)});
    p.swap_in.push_back({n, n * p.block_bytes, m(3e-6 + 4e-7 * n)});
  }
  return p;
}

// Adapters of the given ranks (id i has ranks[i]), sizes at `elem` bytes per element.
inline std::vector<AdapterInfo> adapters_of(const ModelShape& s, const std::vector<int>& ranks,
                                            int elem) {
  std::vector<AdapterInfo> out;
  for (size_t i = 0; i < ranks.size(); ++i) {
    AdapterInfo a;
    a.id = static_cast<int32_t>(i);
    a.rank = ranks[i];
    a.num_parameters = lora_parameters(s, ranks[i]);
    a.bytes = a.num_parameters * elem;
    out.push_back(a);
  }
  return out;
}

// One sequence of a batch to describe.
struct SeqSpec {
  api::AdapterId adapter;
  bool prefill;
  int32_t tokens;  // new tokens (prefill) or context (decode)
};

inline ExecBatch make_batch(api::Mode mode, api::AdapterId merged,
                            const std::vector<SeqSpec>& seqs) {
  ExecBatch b;
  b.mode = mode;
  b.merged_adapter = merged;
  int64_t id = 0;
  for (const auto& s : seqs) {
    ExecEntry e;
    e.request = id++;
    e.adapter = s.adapter;
    e.prefill = s.prefill;
    e.new_tokens = s.prefill ? s.tokens : 1;
    e.context_tokens = s.tokens;
    b.entries.push_back(e);
  }
  return b;
}

// P tokens in k prefill sequences (as the profiler lays them out), adapters from `adapter_of`.
template <class F>
std::vector<SeqSpec> prefill_layout(int P, int k, F adapter_of) {
  std::vector<SeqSpec> v;
  for (int i = 0; i < k; ++i) v.push_back({adapter_of(i), true, P / k + (i < P % k ? 1 : 0)});
  return v;
}

}  // namespace lorasched::test
