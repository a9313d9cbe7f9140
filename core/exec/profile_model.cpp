#include "core/exec/profile_model.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <limits>
#include <map>

#include "core/common/error.hpp"
#include "core/exec/interp.hpp"

namespace lorasched {

namespace {

// Builds a Curve from (x, y) points; duplicate x is an error naming `what`.
interp::Curve curve(std::map<double, double> pts) {
  std::vector<double> x, y;
  for (const auto& [k, v] : pts) {
    x.push_back(k);
    y.push_back(v);
  }
  return interp::Curve(std::move(x), std::move(y));
}

class ProfileCostModel final : public CostModel {
 public:
  ProfileCostModel(const Profile& p, std::string source) : p_(p), source_(std::move(source)) {
    auto fail = [&](const std::string& what) {
      throw InputError(fmt::format("{}: {}", source_, what));
    };
    auto dup = [&](const char* table, const std::string& at) {
      fail(fmt::format("'{}' has two points at {}", table, at));
    };
    if (p.prefill.empty()) fail("'prefill' has no points; the cost model needs them");
    if (p.decode.empty()) fail("'decode' has no points; the cost model needs them");
    if (p.lora.empty()) fail("'lora' has no points; the cost model needs them (unmerged batches)");

    std::map<double, std::map<double, double>> pre;
    for (const auto& x : p.prefill)
      if (!pre[x.tokens].emplace(x.seqs, x.m.seconds).second)
        dup("prefill", fmt::format("tokens={} seqs={}", x.tokens, x.seqs));
    for (auto& [P, row] : pre) prefill_.add(P, curve(row));

    std::map<double, std::map<double, double>> dec;
    for (const auto& x : p.decode)
      if (!dec[x.batch].emplace(x.context, x.m.seconds).second)
        dup("decode", fmt::format("batch={} context={}", x.batch, x.context));
    for (auto& [B, row] : dec) decode_.add(B, curve(row));

    // LoRA extra: the unmerged time minus the same layout on the base weights.
    std::map<double, std::map<double, std::map<double, double>>> lo;
    for (const auto& x : p.lora) {
      const auto row = pre.find(x.tokens);
      const double* base = nullptr;
      if (row != pre.end())
        if (auto it = row->second.find(x.adapters); it != row->second.end()) base = &it->second;
      if (!base)
        fail(
            fmt::format("'lora' point tokens={} adapters={} rank={} has no 'prefill' point with "
                        "tokens={} seqs={} to compare with",
                        x.tokens, x.adapters, x.rank, x.tokens, x.adapters));
      if (!lo[x.adapters][x.tokens].emplace(x.rank, std::max(0.0, x.m.seconds - *base)).second)
        dup("lora", fmt::format("tokens={} adapters={} rank={}", x.tokens, x.adapters, x.rank));
    }
    for (auto& [D, by_tokens] : lo) {
      interp::Table2 t;
      for (auto& [T, by_rank] : by_tokens) t.add(T, curve(by_rank));
      lora_.add(D, std::move(t));
    }

    // The overhead a prefill and a decode batch share when run as one (median over the
    // mixed points), at most the cheapest measured iteration.
    std::vector<double> shared;
    for (const auto& x : p.mixed)
      shared.push_back(prefill_(x.prefill_tokens, x.prefill_seqs) +
                       decode_(x.decode_batch, x.decode_context) - x.m.seconds);
    if (!shared.empty()) {
      double cheapest = std::numeric_limits<double>::infinity();
      for (const auto& x : p.prefill) cheapest = std::min(cheapest, x.m.seconds);
      for (const auto& x : p.decode) cheapest = std::min(cheapest, x.m.seconds);
      overhead_ = std::clamp(median(shared), 0.0, cheapest);
    }

    auto sized = [&](const char* table, const std::vector<SizePoint>& v) {
      if (v.empty()) fail(fmt::format("'{}' has no points; the cost model needs them", table));
      std::map<double, double> pts;
      for (const auto& x : v)
        if (!pts.emplace(static_cast<double>(x.bytes), x.m.seconds).second)
          dup(table, fmt::format("bytes={}", x.bytes));
      return curve(pts);
    };
    merge_ = sized("merge", p.merge);
    unmerge_ = sized("unmerge", p.unmerge);
    load_ = sized("load", p.load);
    swap_out_ = sized("swap_out", p.swap_out);
    swap_in_ = sized("swap_in", p.swap_in);
    if (!p.switches.empty()) switch_ = sized("switch", p.switches);
  }

  std::string describe() const override {
    return fmt::format("profile {} ({} executor on {}, {}, {} threads, model {}, {})", source_,
                       p_.machine.executor, p_.machine.hostname, p_.machine.cpu_model,
                       p_.machine.threads, p_.shape.name, p_.date);
  }

  // The LoRA part is the lora table at the batch's LoRA layout: its segments over every pass
  // (D), the rows they cover (T: each LoRA row once per pass) and their mean rank; the table
  // was measured on unmerged prefill layouts of D segments, each with its own adapter.
  IterationTime iteration_time(const BatchFeatures& f) const override {
    const double P = static_cast<double>(f.prefill_tokens);
    const double B = f.decode_seqs;
    IterationTime t;
    if (P > 0) t.base += prefill_(P, f.prefill_seqs());
    if (B > 0) t.base += decode_(B, static_cast<double>(f.decode_context) / B);
    if (P > 0 && B > 0) t.base -= overhead_;
    if (f.lora_tokens > 0) {
      const double T = static_cast<double>(f.lora_segment_tokens());
      t.lora = lora_(std::max(1, f.lora_segments), T, static_cast<double>(f.lora_token_rank) / T);
    }
    if (t.total() < 0) t.base = -t.lora;  // never negative
    return t;
  }

  std::vector<CostStep> switch_steps(const AdapterInfo* from, const AdapterInfo* to,
                                     SwitchMethod method) const override {
    std::vector<CostStep> s;
    if (from && to && method == SwitchMethod::fused) {
      const double bytes = static_cast<double>(from->bytes + to->bytes);
      const double t = switch_.empty() ? unmerge_(static_cast<double>(from->bytes)) +
                                             merge_(static_cast<double>(to->bytes))
                                       : switch_(bytes);
      s.push_back({EventKind::adapter_switch, to->id, t, from->bytes + to->bytes, from->id});
      return s;
    }
    if (from)
      s.push_back(
          {EventKind::unmerge, from->id, unmerge_(static_cast<double>(from->bytes)), from->bytes});
    if (to)
      s.push_back({EventKind::merge, to->id, merge_(static_cast<double>(to->bytes)), to->bytes});
    return s;
  }
  double load(int64_t bytes) const override { return load_(static_cast<double>(bytes)); }
  double swap(int64_t bytes, bool to_device) const override {
    return (to_device ? swap_in_ : swap_out_)(static_cast<double>(bytes));
  }
  double device_memory_bytes() const override { return p_.device_memory_bytes; }
  double default_pool_bytes() const override { return p_.default_pool_bytes; }
  int bytes_per_element() const override { return p_.element_bytes; }
  const ModelShape& shape() const override { return p_.shape; }

 private:
  Profile p_;
  std::string source_;
  interp::Table2 prefill_;  // (tokens, seqs)
  interp::Table2 decode_;   // (batch, mean context)
  interp::Table3 lora_;     // (distinct adapters, LoRA tokens, mean rank per token)
  double overhead_ = 0;
  interp::Curve merge_, unmerge_, load_, swap_out_, swap_in_;  // by bytes
  interp::Curve switch_;  // by the two adapters' bytes; empty: unmerge + merge
};

}  // namespace

std::unique_ptr<CostModel> profile_cost_model(const Profile& p, const std::string& source,
                                              const ModelShape& shape) {
  if (const std::string diff = shape_difference(p.shape, shape); !diff.empty())
    throw InputError(
        fmt::format("{}: the profile was taken on model '{}' and the experiment's model "
                    "is '{}': {} (take a profile of this model with `lorasched profile "
                    "--model ...`)",
                    source, p.shape.name, shape.name, diff));
  return std::make_unique<ProfileCostModel>(p, source);
}

}  // namespace lorasched
