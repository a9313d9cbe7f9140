#include "core/exec/profiler.hpp"

#include <fmt/format.h>
#include <array>
#include <chrono>
#include <initializer_list>
#include <map>
#include <optional>

#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/exec/profile_grid.hpp"

namespace lorasched {

using api::AdapterId;

namespace {

// One sequence of a batch to build.
struct Seq {
  AdapterId adapter;
  bool prefill;
  int32_t new_tokens;
  int32_t context;
};

class Profiler {
 public:
  Profiler(const ProfileTarget& t, const ProfileGrid& g) : t_(t), g_(g), exec_(*t.executor) {
    LORASCHED_CHECK(t.executor != nullptr, "profile target without an executor");
    LORASCHED_CHECK(g.repeats >= 1 && g.warmup >= 0, "bad repeat counts");
    for (const auto& a : t.adapters) by_rank_[a.rank].push_back(a);
    const int32_t need = profile_adapters_per_rank(g);
    for (int32_t r : g.ranks)
      LORASCHED_CHECK(static_cast<int32_t>(by_rank_[r].size()) >= need,
                      "profile target has {} adapters of rank {}, the grid needs {}",
                      by_rank_[r].size(), r, need);
    blocks_.resize(static_cast<size_t>(t.kv_blocks));
    for (size_t i = 0; i < blocks_.size(); ++i) blocks_[i] = static_cast<int32_t>(i);
    Rng rng(0x70726f66696c65ULL);
    tokens_.resize(static_cast<size_t>(std::max<int64_t>(t.kv_blocks * t.block_size, 1)));
    for (auto& x : tokens_) x = static_cast<int32_t>(rng.uniform_int(0, t.shape.vocab_size - 1));
  }

  Profile run(const std::function<void(std::string_view)>& log) {
    Profile p;
    p.shape = t_.shape;
    p.element_bytes = t_.element_bytes;
    p.block_size = t_.block_size;
    p.block_bytes = t_.block_bytes;
    p.grid = g_;
    auto part = [&](const char* name, size_t points, Clock::time_point t0) {
      if (log)
        log(fmt::format("{:<8} {:4d} points  {:6.1f} s", name, points,
                        std::chrono::duration<double>(Clock::now() - t0).count()));
    };

    // Every adapter but the last of each rank stays resident; the last one is loaded and
    // evicted to time loads.
    for (const auto& [rank, list] : by_rank_)
      for (size_t i = 0; i + 1 < list.size(); ++i) exec_.load_adapter(list[i].id);
    const AdapterId base = by_rank_.at(g_.ranks.front()).front().id;

    // The batches: on the base weights (merged mode: the merged adapter's requests, no
    // LoRA term) prefill, decode and mixed batches; unmerged, the prefill layouts again with
    // each sequence on its own adapter (run i of a point takes the adapters i*D .. i*D+D-1,
    // mod the rotation, of its rank).
    auto t0 = Clock::now();
    std::vector<Job> prefill, decode, mixed, lora;
    for (int32_t P : g_.prefill_tokens)
      for (int32_t k : g_.prefill_seqs)
        if (k <= P)
          add_job(prefill, api::Mode::merged, base,
                  prefill_seqs(P, k, [&](int32_t) { return base; }), {P, k});
    for (int32_t B : g_.decode_batch)
      for (int32_t C : g_.decode_context)
        add_job(decode, api::Mode::merged, base,
                std::vector<Seq>(static_cast<size_t>(B), Seq{base, false, 1, C}), {B, C});
    for (const MixedPoint& x : g_.mixed) {
      auto seqs = prefill_seqs(x.prefill_tokens, x.prefill_seqs, [&](int32_t) { return base; });
      for (int32_t i = 0; i < x.decode_batch; ++i)
        seqs.push_back({base, false, 1, x.decode_context});
      add_job(mixed, api::Mode::merged, base, seqs,
              {x.prefill_tokens, x.prefill_seqs, x.decode_batch, x.decode_context});
    }
    for (const Job& pj : prefill)
      for (int32_t r : g_.ranks) {
        const int32_t P = pj.key[0], D = pj.key[1];
        const auto& list = by_rank_.at(r);
        const auto rotation = static_cast<size_t>(std::max<int32_t>(g_.adapter_rotation, D));
        auto pick = [&list, rotation, D](size_t run, size_t i) {
          return list[(run * static_cast<size_t>(D) + i) % rotation].id;
        };
        add_job(lora, api::Mode::unmerged, api::kNoAdapter,
                prefill_seqs(P, D, [&](int32_t i) { return pick(0, static_cast<size_t>(i)); }),
                {P, D, r});
        if (rotation > static_cast<size_t>(D))
          lora.back().vary = [pick](ExecBatch& b, int run) {
            for (size_t i = 0; i < b.entries.size(); ++i)
              b.entries[i].adapter = pick(static_cast<size_t>(run), i);
          };
      }

    // Rounds: every point runs once per round (warm-up rounds first) and a point's median is
    // over the rounds. So a point's runs follow other batches, as an iteration follows
    // other batches in serving (the caches hold what the previous batch used, not this
    // one). Prefill layouts run per token count, on the base weights and then unmerged, so
    // a LoRA point and its base point are measured within a second of each other (a change
    // of the machine's load moves both).
    for (int i = 0; i < g_.warmup + g_.repeats; ++i) {
      set_merged(base);
      run_round(decode, i);
      run_round(mixed, i);
      for (int32_t P : g_.prefill_tokens) {
        set_merged(base);
        run_round(prefill, i, P);
        set_merged(api::kNoAdapter);
        run_round(lora, i, P);
      }
      if (log && i + 1 < g_.warmup + g_.repeats)
        log(fmt::format("round {}/{} {:6.1f} s", i + 1, g_.warmup + g_.repeats,
                        std::chrono::duration<double>(Clock::now() - t0).count()));
    }
    set_merged(api::kNoAdapter);
    for (const Job& j : prefill) p.prefill.push_back({j.key[0], j.key[1], finish(j)});
    for (const Job& j : decode) p.decode.push_back({j.key[0], j.key[1], finish(j)});
    for (const Job& j : mixed)
      p.mixed.push_back({j.key[0], j.key[1], j.key[2], j.key[3], finish(j)});
    for (const Job& j : lora) p.lora.push_back({j.key[0], j.key[1], j.key[2], finish(j)});
    part("batches", p.prefill.size() + p.decode.size() + p.mixed.size() + p.lora.size(), t0);

    // Per rank: merge of one adapter, fused switch to another of the same rank, unmerge.
    t0 = Clock::now();
    for (int32_t r : g_.ranks) {
      const AdapterInfo& a = by_rank_.at(r)[0];
      const AdapterInfo& b = by_rank_.at(r)[1];
      std::vector<double> merge, fused, unmerge;
      for (int i = 0; i < g_.warmup + g_.repeats; ++i) {
        double tm = 0, ts = 0, tu = 0;
        for (const CostStep& s : exec_.switch_weights(api::kNoAdapter, a.id, SwitchMethod::fused))
          tm += s.seconds;
        for (const CostStep& s : exec_.switch_weights(a.id, b.id, SwitchMethod::fused))
          ts += s.seconds;
        for (const CostStep& s : exec_.switch_weights(b.id, api::kNoAdapter, SwitchMethod::fused))
          tu += s.seconds;
        if (i < g_.warmup) continue;
        merge.push_back(tm);
        fused.push_back(ts);
        unmerge.push_back(tu);
      }
      p.merge.push_back({r, a.bytes, {median(merge), merge}});
      p.switches.push_back({r, a.bytes + b.bytes, {median(fused), fused}});
      p.unmerge.push_back({r, b.bytes, {median(unmerge), unmerge}});
    }
    part("switch", p.merge.size() + p.switches.size() + p.unmerge.size(), t0);

    // Adapter loads.
    t0 = Clock::now();
    for (int32_t r : g_.ranks) {
      const AdapterInfo& a = by_rank_.at(r).back();
      std::vector<double> samples;
      int64_t bytes = a.bytes;
      for (int i = 0; i < g_.warmup + g_.repeats; ++i) {
        const CostStep s = exec_.load_adapter(a.id);
        exec_.evict_adapter(a.id);
        bytes = s.bytes;
        if (i >= g_.warmup) samples.push_back(s.seconds);
      }
      p.load.push_back({r, bytes, {median(samples), samples}});
    }
    part("load", p.load.size(), t0);

    // Swaps of KV blocks to host memory and back.
    t0 = Clock::now();
    for (int32_t n : g_.swap_blocks) {
      if (n > t_.kv_blocks) continue;
      const std::span<const int32_t> blocks(blocks_.data(), static_cast<size_t>(n));
      std::vector<double> out, in;
      int64_t bytes = 0;
      for (int i = 0; i < g_.warmup + g_.repeats; ++i) {
        const CostStep so = exec_.swap_out(1, blocks);
        const CostStep si = exec_.swap_in(1, blocks);
        bytes = so.bytes;
        if (i < g_.warmup) continue;
        out.push_back(so.seconds);
        in.push_back(si.seconds);
      }
      p.swap_out.push_back({n, bytes, {median(out), out}});
      p.swap_in.push_back({n, bytes, {median(in), in}});
    }
    part("swap", p.swap_out.size() + p.swap_in.size(), t0);
    return p;
  }

 private:
  using Clock = std::chrono::steady_clock;

  void set_merged(AdapterId a) {
    if (merged_ == a) return;
    exec_.switch_weights(merged_, a, SwitchMethod::fused);
    merged_ = a;
  }

  // k sequences of P tokens in all (the first P % k one token longer).
  template <class AdapterOf>
  std::vector<Seq> prefill_seqs(int32_t P, int32_t k, AdapterOf adapter_of) const {
    std::vector<Seq> seqs;
    for (int32_t i = 0; i < k; ++i) {
      const int32_t n = P / k + (i < P % k ? 1 : 0);
      seqs.push_back({adapter_of(i), true, n, n});
    }
    return seqs;
  }

  // One point of a table: its batch, what varies from run to run, its samples.
  struct Job {
    std::array<int32_t, 4> key{};
    ExecBatch batch;
    std::function<void(ExecBatch&, int)> vary;  // before run i (adapters of the rotation)
    Measurement m;
  };

  // Adds the point's job, or nothing (false) when the batch needs more KV slots than the
  // grid allows or the pool holds. The points of a table share the pool's first blocks.
  bool add_job(std::vector<Job>& jobs, api::Mode mode, AdapterId merged,
               const std::vector<Seq>& seqs, std::initializer_list<int32_t> key) {
    const int64_t bs = t_.block_size;
    int64_t need_blocks = 0, need_tokens = 0;
    for (const Seq& s : seqs) {
      need_blocks += (s.context + bs - 1) / bs;
      need_tokens += s.context;
    }
    if (need_blocks > t_.kv_blocks || need_tokens > g_.max_kv_tokens) return false;
    Job j;
    std::copy(key.begin(), key.end(), j.key.begin());
    j.batch.mode = mode;
    j.batch.merged_adapter = merged;
    size_t block = 0, token = 0;
    int64_t id = 0;
    for (const Seq& s : seqs) {
      ExecEntry e;
      e.request = id++;
      e.adapter = s.adapter;
      e.prefill = s.prefill;
      e.new_tokens = s.new_tokens;
      e.context_tokens = s.context;
      const size_t nb = static_cast<size_t>((s.context + bs - 1) / bs);
      e.block_table = std::span<const int32_t>(blocks_.data() + block, nb);
      block += nb;
      e.tokens =
          std::span<const int32_t>(tokens_.data() + token, static_cast<size_t>(s.new_tokens));
      token += static_cast<size_t>(s.new_tokens);
      j.batch.entries.push_back(e);
    }
    jobs.push_back(std::move(j));
    return true;
  }

  // Runs every job of a table once (those whose first key is `first`, if given), after
  // one untimed run of the first of them, so that no timed run directly follows a weight
  // switch or a batch of another table; run i < warmup is not timed.
  void run_round(std::vector<Job>& jobs, int i, std::optional<int32_t> first = std::nullopt) {
    bool settled = false;
    for (Job& j : jobs) {
      if (first && j.key[0] != *first) continue;
      if (j.vary) j.vary(j.batch, i);
      if (!settled) {
        exec_.run(j.batch);
        settled = true;
      }
      const double t = exec_.run(j.batch).seconds;
      if (i >= g_.warmup) j.m.samples.push_back(t);
    }
  }
  static Measurement finish(const Job& j) { return {median(j.m.samples), j.m.samples}; }

  const ProfileTarget& t_;
  const ProfileGrid& g_;
  Executor& exec_;
  std::map<int32_t, std::vector<AdapterInfo>> by_rank_;
  std::vector<int32_t> blocks_, tokens_;
  AdapterId merged_ = api::kNoAdapter;
};

}  // namespace

Profile run_profile(const ProfileTarget& target, const ProfileGrid& grid,
                    const std::function<void(std::string_view)>& log) {
  LORASCHED_CHECK(!grid.ranks.empty(), "profile grid without ranks");
  const auto t0 = std::chrono::steady_clock::now();
  Profiler prof(target, grid);
  Profile p = prof.run(log);
  p.seconds_taken = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return p;
}
}  // namespace lorasched
