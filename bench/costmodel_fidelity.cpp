// The cost model's pricing of mixed batches, fused switches and the unmerged path's LoRA
// terms, measured against the cpu executor (docs/costmodel.md, "Fidelity of each change"):
//
//   build/release/bench/costmodel_fidelity results/profile-tiny.json [--repeats 7] [--threads 1]
//   build/release/bench/costmodel_fidelity --presets
//
// On the tiny model and the profile's adapters it times, on the real cpu executor, batches of
// chosen layouts (decode and prefill; unmerged, and mixed: one adapter merged and the other
// adapters' rows through the LoRA path) and weight switches (fused, and unmerge then merge), each
// the median of interleaved repeats; and prints each measurement beside the profile model's
// prediction (and, for mixed batches, what the cost model predicted before mixed batches were
// priced: the same batch as an unmerged one). Then it fits the explicit-term form of the
// presets (seconds per token x rank, per segment, per rank of a distinct adapter) to the
// profile's LoRA points and reports how well it describes them. With --presets it prints what the
// hardware presets predict at dLoRA's reference batch instead (no measurement).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/adapters/synthetic.hpp"
#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/exec/cpu_executor.hpp"
#include "core/exec/presets.hpp"
#include "core/exec/profile_json.hpp"
#include "core/model/presets.hpp"
#include "core/model/synthetic.hpp"

namespace lorasched {
namespace {

using api::AdapterId;
using api::Mode;

constexpr int32_t kBlock = 16;

// One sequence of a batch: its adapter, prefill (new = context tokens) or decode at `context`.
struct Seq {
  AdapterId adapter;
  bool prefill;
  int32_t context;
};

struct Case {
  std::string name;
  Mode mode;
  AdapterId merged;
  std::vector<Seq> seqs;
};

class Bench {
 public:
  Bench(const std::string& profile_path, int repeats) : repeats_(repeats) {
    const Profile p = read_profile(profile_path);
    shape_ = model_preset("tiny");
    model_ = make_cost_model(profile_path, shape_);
    // Three adapters of each rank the profile measured, as `lorasched profile` makes them.
    auto host = std::make_shared<std::vector<LoraAdapterWeights>>();
    for (int32_t r : p.grid.ranks)
      for (int i = 0; i < 3; ++i) {
        AdapterInfo a;
        a.id = static_cast<AdapterId>(host->size());
        a.rank = r;
        a.num_parameters = lora_parameters(shape_, r);
        a.bytes = a.num_parameters * 4;
        host->push_back(synthetic_adapter(shape_, r, r, false, 7000 + static_cast<uint64_t>(a.id),
                                          fmt::format("rank{}-{}", r, i)));
        by_rank_[r].push_back(a.id);
        adapters_.push_back(a);
      }
    blocks_ = 4096;
    exec_ = std::make_unique<CpuExecutor>(synthetic_model(shape_, 20240601), host, blocks_, kBlock);
    for (const AdapterInfo& a : adapters_) exec_->load_adapter(a.id);
    Rng rng(99);
    tokens_.resize(static_cast<size_t>(blocks_ * kBlock));
    for (auto& t : tokens_) t = static_cast<int32_t>(rng.uniform_int(0, shape_.vocab_size - 1));
    table_.resize(static_cast<size_t>(blocks_));
    for (size_t i = 0; i < table_.size(); ++i) table_[i] = static_cast<int32_t>(i);
  }

  AdapterId adapter(int32_t rank, int i) const {
    return by_rank_.at(rank).at(static_cast<size_t>(i));
  }
  const std::vector<AdapterInfo>& adapters() const { return adapters_; }
  const CostModel& model() const { return *model_; }

  ExecBatch batch(const Case& c) const {
    ExecBatch b;
    b.mode = c.mode;
    b.merged_adapter = c.merged;
    size_t block = 0, token = 0;
    int64_t id = 0;
    for (const Seq& s : c.seqs) {
      ExecEntry e;
      e.request = id++;
      e.adapter = s.adapter;
      e.prefill = s.prefill;
      e.new_tokens = s.prefill ? s.context : 1;
      e.context_tokens = s.context;
      const size_t nb = static_cast<size_t>((s.context + kBlock - 1) / kBlock);
      e.block_table = std::span<const int32_t>(table_.data() + block, nb);
      block += nb;
      e.tokens =
          std::span<const int32_t>(tokens_.data() + token, static_cast<size_t>(e.new_tokens));
      token += static_cast<size_t>(e.new_tokens);
      b.entries.push_back(e);
    }
    return b;
  }

  // Median seconds of each case: rounds over all cases (so a case's runs follow other batches,
  // as in serving), the merged adapter switched in (untimed) before each run that needs it.
  std::vector<double> time_cases(const std::vector<Case>& cases) {
    std::vector<std::vector<double>> samples(cases.size());
    for (int round = 0; round < repeats_ + 1; ++round)
      for (size_t i = 0; i < cases.size(); ++i) {
        set_merged(cases[i].merged);
        const double t = exec_->run(batch(cases[i])).seconds;
        if (round > 0) samples[i].push_back(t);
      }
    set_merged(api::kNoAdapter);
    std::vector<double> out;
    for (auto& s : samples) out.push_back(median(s));
    return out;
  }

  // Median seconds of a switch from -> to done by `method` (from merged first, untimed).
  double time_switch(AdapterId from, AdapterId to, SwitchMethod method) {
    std::vector<double> s;
    for (int round = 0; round < repeats_ + 1; ++round) {
      set_merged(from);
      double t = 0;
      for (const CostStep& st : exec_->switch_weights(from, to, method)) t += st.seconds;
      merged_ = to;
      if (round > 0) s.push_back(t);
    }
    set_merged(api::kNoAdapter);
    return median(s);
  }

 private:
  void set_merged(AdapterId a) {
    if (a == merged_) return;
    exec_->switch_weights(merged_, a, SwitchMethod::fused);
    merged_ = a;
  }

  int repeats_;
  ModelShape shape_;
  std::unique_ptr<CostModel> model_;
  std::vector<AdapterInfo> adapters_;
  std::map<int32_t, std::vector<AdapterId>> by_rank_;
  int64_t blocks_ = 0;
  std::unique_ptr<CpuExecutor> exec_;
  std::vector<int32_t> tokens_, table_;
  AdapterId merged_ = api::kNoAdapter;
};

std::string pct(double predicted, double measured) {
  return fmt::format("{:+.1f}%", (predicted - measured) / measured * 100.0);
}

// Least squares for y ~ X c (3 columns) through the normal equations, by Cramer's rule.
std::array<double, 3> fit3(const std::vector<std::array<double, 3>>& X,
                           const std::vector<double>& y) {
  double A[3][3] = {}, b[3] = {};
  for (size_t n = 0; n < X.size(); ++n)
    for (int i = 0; i < 3; ++i) {
      b[i] += X[n][i] * y[n];
      for (int j = 0; j < 3; ++j) A[i][j] += X[n][i] * X[n][j];
    }
  auto det = [](const double M[3][3]) {
    return M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1]) -
           M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0]) +
           M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
  };
  const double d = det(A);
  std::array<double, 3> c{};
  for (int k = 0; k < 3; ++k) {
    double M[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) M[i][j] = j == k ? b[i] : A[i][j];
    c[static_cast<size_t>(k)] = det(M) / d;
  }
  return c;
}

// A decode batch at dLoRA's reference context: entry i on adapters[i] (kNoAdapter: none).
ExecBatch reference_decodes(Mode mode, AdapterId merged, const std::vector<AdapterId>& adapters) {
  ExecBatch b;
  b.mode = mode;
  b.merged_adapter = merged;
  for (size_t i = 0; i < adapters.size(); ++i) {
    ExecEntry e;
    e.request = static_cast<int64_t>(i);
    e.adapter = adapters[i];
    e.new_tokens = 1;
    e.context_tokens = kReferenceContext;
    b.entries.push_back(e);
  }
  return b;
}

// What the hardware presets predict at dLoRA's reference batch in both LoRA-kernel regimes:
// merged and unmerged iterations, a mixed batch against the same batch unmerged, and a switch
// between two rank-16 adapters fused and as unmerge + merge.
void print_presets() {
  fmt::print(
      "### Hardware presets at dLoRA's reference batch (16 decodes at context 512, rank 16)\n\n"
      "mixed: adapter 0 merged, 8 of its decodes and 8 decodes of 4 other adapters (2 each); "
      "the same batch unmerged beside it.\n\n");
  fmt::print(
      "| preset | LoRA kernels | merged (ms) | unmerged, 16 adapters (ms) | unmerged / merged | "
      "mixed (ms) | same batch unmerged (ms) | switch fused (ms) | unmerge + merge (ms) | fused / "
      "unmerge+merge |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& name : hardware_preset_names()) {
    std::string model = name.substr(0, name.find('@'));
    if (const auto tp = model.find("-tp"); tp != std::string::npos) model.resize(tp);
    const ModelShape shape = model_preset(model);
    std::vector<AdapterInfo> adapters;
    for (AdapterId a = 0; a < kReferenceBatch; ++a)
      adapters.push_back(reference_adapter(shape, 2, a));
    std::vector<AdapterId> mixed_rows;
    for (int i = 0; i < kReferenceBatch; ++i)
      mixed_rows.push_back(i < kReferenceBatch / 2 ? 0 : 1 + (i - kReferenceBatch / 2) / 2);
    for (LoraKernels k : {LoraKernels::artifact, LoraKernels::sgmv}) {
      auto m = make_hardware_preset(name, shape, k);
      const double merged = m->iteration(reference_batch(false));
      const double unmerged = m->iteration(reference_batch(true));
      const double mixed =
          m->iteration(batch_features(reference_decodes(Mode::mixed, 0, mixed_rows), adapters));
      const double mixed_as_unmerged = m->iteration(
          batch_features(reference_decodes(Mode::unmerged, api::kNoAdapter, mixed_rows), adapters));
      double fused = 0, plain = 0;
      for (const CostStep& s : m->switch_steps(&adapters[0], &adapters[1], SwitchMethod::fused))
        fused += s.seconds;
      for (const CostStep& s :
           m->switch_steps(&adapters[0], &adapters[1], SwitchMethod::unmerge_merge))
        plain += s.seconds;
      fmt::print(
          "| {} | {} | {:.2f} | {:.2f} | {:.3f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.3f} |\n",
          name, k == LoraKernels::sgmv ? "sgmv" : "artifact", merged * 1e3, unmerged * 1e3,
          unmerged / merged, mixed * 1e3, mixed_as_unmerged * 1e3, fused * 1e3, plain * 1e3,
          fused / plain);
    }
  }
  fmt::print("\n");
}

int run(const std::string& profile, int repeats) {
  Bench B(profile, repeats);
  const int32_t r8 = 8, r16 = 16, r64 = 64;
  auto a = [&](int32_t rank, int i) { return B.adapter(rank, i); };

  // ---- batches: mixed (merged adapter m = rank 16 #0) and the same layouts unmerged ----------
  const AdapterId m = a(r16, 0);
  std::vector<Case> cases;
  auto both = [&](const std::string& name, std::vector<Seq> seqs) {
    cases.push_back({name + " mixed", Mode::mixed, m, seqs});
    cases.push_back({name + " unmerged", Mode::unmerged, api::kNoAdapter, seqs});
  };
  for (int others : {2, 8, 12}) {
    for (int k : {1, 2, 4}) {
      std::vector<Seq> seqs;
      for (int i = 0; i < 16 - others; ++i) seqs.push_back({m, false, 128});
      const AdapterId pool[] = {a(r8, 0), a(r64, 0), a(r16, 1), a(r8, 1)};
      for (int i = 0; i < others; ++i) seqs.push_back({pool[i % k], false, 128});
      both(fmt::format("decode 16: {} of m, {} of {} others", 16 - others, others, k), seqs);
    }
  }
  both("prefill 2 x 64 (m, r64) + decode 8 (4 m, 4 r8)", {{m, true, 64},
                                                          {a(r64, 1), true, 64},
                                                          {m, false, 200},
                                                          {m, false, 200},
                                                          {m, false, 200},
                                                          {m, false, 200},
                                                          {a(r8, 2), false, 200},
                                                          {a(r8, 2), false, 200},
                                                          {a(r8, 2), false, 200},
                                                          {a(r8, 2), false, 200}});
  both("prefill 256 of m + 32 of r8", {{m, true, 256}, {a(r8, 0), true, 32}});
  const std::vector<double> t = B.time_cases(cases);

  fmt::print("### Batches: measured on the cpu executor vs the profile model\n\n");
  fmt::print(
      "| batch | measured (ms) | predicted (ms) | error | priced as unmerged (ms) | error |\n");
  fmt::print("|---|---|---|---|---|---|\n");
  double sum_new = 0, sum_old = 0;
  int n_mixed = 0;
  double sum_unmerged = 0;
  int n_unmerged = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const ExecBatch b = B.batch(cases[i]);
    const double pred = B.model().iteration(batch_features(b, B.adapters()));
    if (cases[i].mode == Mode::mixed) {
      ExecBatch as_unmerged = b;  // how the cost model priced a mixed batch before
      as_unmerged.mode = Mode::unmerged;
      as_unmerged.merged_adapter = api::kNoAdapter;
      const double old = B.model().iteration(batch_features(as_unmerged, B.adapters()));
      fmt::print("| {} | {:.3f} | {:.3f} | {} | {:.3f} | {} |\n", cases[i].name, t[i] * 1e3,
                 pred * 1e3, pct(pred, t[i]), old * 1e3, pct(old, t[i]));
      sum_new += std::abs(pred - t[i]) / t[i];
      sum_old += std::abs(old - t[i]) / t[i];
      ++n_mixed;
    } else {
      fmt::print("| {} | {:.3f} | {:.3f} | {} | | |\n", cases[i].name, t[i] * 1e3, pred * 1e3,
                 pct(pred, t[i]));
      sum_unmerged += std::abs(pred - t[i]) / t[i];
      ++n_unmerged;
    }
  }
  fmt::print(
      "\nMean absolute error: mixed batches {:.1f}% (priced as unmerged, as before: {:.1f}%); "
      "unmerged batches {:.1f}%.\n\n",
      100 * sum_new / n_mixed, 100 * sum_old / n_mixed, 100 * sum_unmerged / n_unmerged);

  // ---- switches -------------------------------------------------------------------------------
  fmt::print("### Switches between two adapters: measured vs predicted\n\n");
  fmt::print(
      "| switch | fused measured (ms) | predicted | error | unmerge + merge measured (ms) | "
      "predicted | error | fused / unmerge+merge measured |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  const std::pair<int32_t, int32_t> pairs[] = {{r8, r8}, {r16, r16}, {r64, r64}, {r8, r64}};
  for (const auto& [ra, rb] : pairs) {
    const AdapterId from = a(ra, 0), to = ra == rb ? a(rb, 1) : a(rb, 0);
    const double fused = B.time_switch(from, to, SwitchMethod::fused);
    const double plain = B.time_switch(from, to, SwitchMethod::unmerge_merge);
    const AdapterInfo& fa = B.adapters()[static_cast<size_t>(from)];
    const AdapterInfo& ta = B.adapters()[static_cast<size_t>(to)];
    double pf = 0, pp = 0;
    for (const CostStep& s : B.model().switch_steps(&fa, &ta, SwitchMethod::fused)) pf += s.seconds;
    for (const CostStep& s : B.model().switch_steps(&fa, &ta, SwitchMethod::unmerge_merge))
      pp += s.seconds;
    fmt::print("| rank {} -> rank {} | {:.2f} | {:.2f} | {} | {:.2f} | {:.2f} | {} | {:.2f} |\n",
               ra, rb, fused * 1e3, pf * 1e3, pct(pf, fused), plain * 1e3, pp * 1e3, pct(pp, plain),
               fused / plain);
  }

  // ---- the explicit-term form on the profile's LoRA points ------------------------------------
  const Profile p = read_profile(profile);
  std::map<std::pair<int32_t, int32_t>, double> base;
  for (const auto& x : p.prefill) base[{x.tokens, x.seqs}] = x.m.seconds;
  std::vector<std::array<double, 3>> X;
  std::vector<double> y;
  for (const auto& x : p.lora) {
    const auto it = base.find({x.tokens, x.adapters});
    if (it == base.end()) continue;
    // The profile's LoRA layouts: x.adapters segments of rank x.rank over x.tokens tokens.
    X.push_back({static_cast<double>(x.tokens) * x.rank, static_cast<double>(x.adapters),
                 static_cast<double>(x.adapters) * x.rank});
    y.push_back(x.m.seconds - it->second);
  }
  const auto c = fit3(X, y);
  double err_sum = 0, err_max = 0, big_sum = 0;
  int big = 0;
  for (size_t n = 0; n < y.size(); ++n) {
    const double f = c[0] * X[n][0] + c[1] * X[n][1] + c[2] * X[n][2];
    const double e = std::abs(f - y[n]);
    err_sum += e;
    err_max = std::max(err_max, e);
    if (y[n] > 1e-3) {  // LoRA extras of at least 1 ms: relative error
      big_sum += e / y[n];
      ++big;
    }
  }
  fmt::print(
      "\n### The explicit-term form fitted to the profile's {} LoRA points\n\n"
      "t_lora = {:.3g} s x (tokens x rank) + {:.3g} s x segments + {:.3g} s x (adapter ranks)\n"
      "absolute error: mean {:.3f} ms, max {:.3f} ms; relative error on the {} points with at "
      "least 1 ms of LoRA work: mean {:.1f}%\n",
      y.size(), c[0], c[1], c[2], 1e3 * err_sum / static_cast<double>(y.size()), 1e3 * err_max, big,
      big > 0 ? 100 * big_sum / big : 0.0);
  return 0;
}

}  // namespace
}  // namespace lorasched

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: {} PROFILE.json [--repeats N] [--threads N] | --presets\n", argv[0]);
    return 2;
  }
  if (std::string(argv[1]) == "--presets") {  // the hardware presets' predictions only
    lorasched::print_presets();
    return 0;
  }
  int repeats = 7, threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--repeats")
      repeats = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--threads")
      threads = std::max(0, std::atoi(argv[i + 1]));
  }
  try {
    lorasched::set_cpu_threads(threads);
    return lorasched::run(argv[1], repeats);
  } catch (const lorasched::Error& e) {
    fmt::print(stderr, "costmodel_fidelity: {}\n", e.what());
    return static_cast<int>(e.code());
  }
}
