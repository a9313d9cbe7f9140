#include "core/exec/profile.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <system_error>

#include "core/adapters/adapter.hpp"
#include "core/common/error.hpp"
#include "core/common/rng.hpp"
#include "core/exec/interp.hpp"

namespace fs = std::filesystem;

namespace lorasched {

using api::AdapterId;
using json = nlohmann::ordered_json;

// ---- the grid ---------------------------------------------------------------------------------

namespace {

std::vector<int32_t> powers_of_two(int32_t lo, int32_t hi) {
  std::vector<int32_t> v;
  for (int64_t x = lo; x <= hi; x *= 2) v.push_back(static_cast<int32_t>(x));
  return v;
}

double linear_params(const ModelShape& s) {
  double n = 0;
  for (int t = 0; t < kNumTargets; ++t)
    n += static_cast<double>(s.out_features(Target(t))) * s.in_features(Target(t));
  return n * s.num_layers;
}

}  // namespace

ProfileGrid default_profile_grid(const ModelShape& shape, bool quick, std::vector<int32_t> ranks) {
  ProfileGrid g;
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  g.ranks = std::move(ranks);
  if (quick) {
    g.prefill_tokens = {1, 4, 16, 64};
    g.prefill_seqs = {1, 2, 4};
    g.decode_batch = {1, 4, 16};
    g.decode_context = {16, 64, 256};
    g.swap_blocks = {1, 16};
    g.mixed = {{16, 1, 4, 64, {}}, {64, 2, 16, 16, {}}};
    g.max_kv_tokens = 8192;
    g.adapter_rotation = 8;
    g.repeats = 2;
    g.warmup = 1;
    return g;
  }
  // Prefill up to the largest power of two whose forward pass stays near 8 GFLOP (1,024
  // tokens for tiny, 128 for small), so the grid takes a minute or two.
  const double flops_per_token = 2.0 * linear_params(shape);
  int32_t max_prefill = 128;
  while (max_prefill < 1024 && 2.0 * max_prefill * flops_per_token <= 8e9) max_prefill *= 2;
  g.prefill_tokens = powers_of_two(1, max_prefill);
  g.prefill_seqs = {1, 2, 4, 8, 16};
  g.decode_batch = powers_of_two(1, 64);
  g.decode_context = powers_of_two(16, 2048);
  g.swap_blocks = {1, 4, 16, 64, 256};
  g.mixed = {{16, 1, 16, 128, {}}, {32, 1, 4, 64, {}},    {64, 1, 8, 128, {}},
             {64, 2, 2, 32, {}},   {128, 2, 16, 256, {}}, {256, 4, 8, 512, {}}};
  // KV slots for the largest points: 256 MiB of fp32 KV cache (64 Ki tokens on tiny).
  g.max_kv_tokens = std::max<int64_t>(
      4096, static_cast<int64_t>((256.0 * 1024 * 1024) /
                                 static_cast<double>(shape.kv_bytes_per_token(4))));
  // Rotation: twice the largest batch's adapters, as far as 128 MiB of fp32 weights of the
  // largest rank allow (32 on tiny: 4.7 MB each at rank 64; 16 on small).
  const int32_t max_d = *std::max_element(g.prefill_seqs.begin(), g.prefill_seqs.end());
  const double largest =
      4.0 * static_cast<double>(lora_parameters(shape, g.ranks.empty() ? 1 : g.ranks.back()));
  g.adapter_rotation =
      std::clamp(static_cast<int32_t>(128.0 * 1024 * 1024 / largest), max_d, 2 * max_d);
  g.repeats = 7;
  g.warmup = 1;
  return g;
}

int32_t profile_adapters_per_rank(const ProfileGrid& grid) {
  int32_t d = grid.adapter_rotation;
  for (int32_t k : grid.prefill_seqs) d = std::max(d, k);
  return d + 1;  // + one to load and evict
}

// ---- the profiler -----------------------------------------------------------------------------

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

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

    // Merge and unmerge of one adapter of each rank.
    t0 = Clock::now();
    for (int32_t r : g_.ranks) {
      const AdapterInfo& a = by_rank_.at(r).front();
      std::vector<double> merge, unmerge;
      for (int i = 0; i < g_.warmup + g_.repeats; ++i) {
        double tm = 0, tu = 0;
        for (const CostStep& s : exec_.switch_weights(api::kNoAdapter, a.id)) tm += s.seconds;
        for (const CostStep& s : exec_.switch_weights(a.id, api::kNoAdapter)) tu += s.seconds;
        if (i < g_.warmup) continue;
        merge.push_back(tm);
        unmerge.push_back(tu);
      }
      p.merge.push_back({r, a.bytes, {median(merge), merge}});
      p.unmerge.push_back({r, a.bytes, {median(unmerge), unmerge}});
    }
    part("switch", p.merge.size() + p.unmerge.size(), t0);

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
    exec_.switch_weights(merged_, a);
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

// ---- JSON -------------------------------------------------------------------------------------

namespace {

json measurement_json(const Measurement& m) {
  json j = json::array();
  for (double s : m.samples) j.push_back(s);
  return j;
}

json shape_json(const ModelShape& s) {
  json j;
  j["name"] = s.name;
  j["vocab_size"] = s.vocab_size;
  j["hidden_size"] = s.hidden_size;
  j["intermediate_size"] = s.intermediate_size;
  j["num_layers"] = s.num_layers;
  j["num_heads"] = s.num_heads;
  j["num_kv_heads"] = s.num_kv_heads;
  j["head_dim"] = s.head_dim;
  j["rms_norm_eps"] = s.rms_norm_eps;
  j["rope_theta"] = s.rope_theta;
  j["tie_word_embeddings"] = s.tie_word_embeddings;
  j["max_position"] = s.max_position;
  return j;
}

json ints(const std::vector<int32_t>& v) {
  json j = json::array();
  for (int32_t x : v) j.push_back(x);
  return j;
}

// Reads fields with errors naming the file and the key ("decode[3].seconds").
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(fmt::format("{}: profile key '{}' {}", file_, key, what));
  }
  const json& get(const json& obj, const std::string& path, const char* key) const {
    const std::string full = path.empty() ? key : path + "." + key;
    if (!obj.is_object()) fail(path, "is not an object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(full, "is missing");
    return *it;
  }
  double number(const json& obj, const std::string& path, const char* key) const {
    const json& v = get(obj, path, key);
    const std::string full = path.empty() ? key : path + "." + key;
    if (!v.is_number()) fail(full, fmt::format("is not a number ({})", v.dump()));
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(full, "is not finite");
    return d;
  }
  double seconds(const json& obj, const std::string& path, const char* key) const {
    const double d = number(obj, path, key);
    if (d < 0) fail(path.empty() ? key : path + "." + key, fmt::format("is negative ({})", d));
    // Beyond a measurement; it would also let the tables extrapolate to infinity.
    if (d > kMaxSeconds)
      fail(path.empty() ? key : path + "." + key,
           fmt::format("is {} s, more than the {} s a measured time can be", d, kMaxSeconds));
    return d;
  }
  static constexpr double kMaxSeconds = 1e6;
  int64_t integer(const json& obj, const std::string& path, const char* key, int64_t lo = INT64_MIN,
                  int64_t hi = INT64_MAX) const {
    const json& v = get(obj, path, key);
    const std::string full = path.empty() ? key : path + "." + key;
    if (!v.is_number_integer()) fail(full, fmt::format("is not an integer ({})", v.dump()));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(full, fmt::format("is {}, outside [{}, {}]", x, lo, hi));
    return x;
  }
  int32_t positive(const json& obj, const std::string& path, const char* key) const {
    return static_cast<int32_t>(integer(obj, path, key, 1, INT32_MAX));
  }
  std::string string(const json& obj, const std::string& path, const char* key) const {
    const json& v = get(obj, path, key);
    if (!v.is_string()) fail(path.empty() ? key : path + "." + key, "is not a string");
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const std::string& path, const char* key) const {
    const json& v = get(obj, path, key);
    if (!v.is_boolean()) fail(path.empty() ? key : path + "." + key, "is not true or false");
    return v.get<bool>();
  }
  const json& array(const json& obj, const std::string& path, const char* key) const {
    const json& v = get(obj, path, key);
    if (!v.is_array()) fail(path.empty() ? key : path + "." + key, "is not an array");
    return v;
  }
  std::vector<int32_t> ints(const json& obj, const std::string& path, const char* key) const {
    const json& a = array(obj, path, key);
    std::vector<int32_t> out;
    const std::string full = path.empty() ? key : path + "." + key;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_number_integer() || a[i].get<int64_t>() < 1 || a[i].get<int64_t>() > INT32_MAX)
        fail(fmt::format("{}[{}]", full, i), "is not a positive integer");
      out.push_back(static_cast<int32_t>(a[i].get<int64_t>()));
    }
    return out;
  }
  Measurement measurement(const json& obj, const std::string& path) const {
    Measurement m;
    m.seconds = seconds(obj, path, "seconds");
    if (obj.contains("samples")) {
      const json& a = array(obj, path, "samples");
      for (size_t i = 0; i < a.size(); ++i) {
        if (!a[i].is_number() || !std::isfinite(a[i].get<double>()) || a[i].get<double>() < 0)
          fail(fmt::format("{}.samples[{}]", path, i), "is not a time in seconds");
        m.samples.push_back(a[i].get<double>());
      }
    }
    return m;
  }
  // Calls f(element, "key[i]") for each element of the array obj[key].
  template <class F>
  void each(const json& obj, const char* key, F f) const {
    const json& a = array(obj, "", key);
    for (size_t i = 0; i < a.size(); ++i) f(a[i], fmt::format("{}[{}]", key, i));
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

ModelShape shape_from(const Reader& r, const json& j) {
  const std::string p = "model";
  ModelShape s;
  s.name = r.string(j, p, "name");
  s.vocab_size = r.positive(j, p, "vocab_size");
  s.hidden_size = r.positive(j, p, "hidden_size");
  s.intermediate_size = r.positive(j, p, "intermediate_size");
  s.num_layers = r.positive(j, p, "num_layers");
  s.num_heads = r.positive(j, p, "num_heads");
  s.num_kv_heads = r.positive(j, p, "num_kv_heads");
  s.head_dim = r.positive(j, p, "head_dim");
  s.rms_norm_eps = static_cast<float>(r.number(j, p, "rms_norm_eps"));
  s.rope_theta = static_cast<float>(r.number(j, p, "rope_theta"));
  s.tie_word_embeddings = r.boolean(j, p, "tie_word_embeddings");
  s.max_position = r.positive(j, p, "max_position");
  return s;
}

}  // namespace

std::string profile_to_json(const Profile& p) {
  json j;
  j["format"] = kProfileFormat;
  j["version"] = p.version;
  j["machine"] = {{"hostname", p.machine.hostname},
                  {"cpu_model", p.machine.cpu_model},
                  {"threads", p.machine.threads},
                  {"executor", p.machine.executor},
                  {"device", p.machine.device}};
  j["date"] = p.date;
  j["model"] = shape_json(p.shape);
  j["element_bytes"] = p.element_bytes;
  j["block_size"] = p.block_size;
  j["block_bytes"] = p.block_bytes;
  j["device_memory_bytes"] = p.device_memory_bytes;
  j["default_pool_bytes"] = p.default_pool_bytes;
  j["seconds_taken"] = p.seconds_taken;
  json g;
  g["prefill_tokens"] = ints(p.grid.prefill_tokens);
  g["prefill_seqs"] = ints(p.grid.prefill_seqs);
  g["decode_batch"] = ints(p.grid.decode_batch);
  g["decode_context"] = ints(p.grid.decode_context);
  g["ranks"] = ints(p.grid.ranks);
  g["swap_blocks"] = ints(p.grid.swap_blocks);
  g["max_kv_tokens"] = p.grid.max_kv_tokens;
  g["adapter_rotation"] = p.grid.adapter_rotation;
  g["repeats"] = p.grid.repeats;
  g["warmup"] = p.grid.warmup;
  j["grid"] = g;
  auto& pre = j["prefill"] = json::array();
  for (const auto& x : p.prefill)
    pre.push_back({{"tokens", x.tokens},
                   {"seqs", x.seqs},
                   {"seconds", x.m.seconds},
                   {"samples", measurement_json(x.m)}});
  auto& dec = j["decode"] = json::array();
  for (const auto& x : p.decode)
    dec.push_back({{"batch", x.batch},
                   {"context", x.context},
                   {"seconds", x.m.seconds},
                   {"samples", measurement_json(x.m)}});
  auto& lora = j["lora"] = json::array();
  for (const auto& x : p.lora)
    lora.push_back({{"tokens", x.tokens},
                    {"adapters", x.adapters},
                    {"rank", x.rank},
                    {"seconds", x.m.seconds},
                    {"samples", measurement_json(x.m)}});
  auto& mixed = j["mixed"] = json::array();
  for (const auto& x : p.mixed)
    mixed.push_back({{"prefill_tokens", x.prefill_tokens},
                     {"prefill_seqs", x.prefill_seqs},
                     {"decode_batch", x.decode_batch},
                     {"decode_context", x.decode_context},
                     {"seconds", x.m.seconds},
                     {"samples", measurement_json(x.m)}});
  auto sizes = [&](const char* key, const char* size_key, const std::vector<SizePoint>& v) {
    auto& a = j[key] = json::array();
    for (const auto& x : v)
      a.push_back({{size_key, x.size},
                   {"bytes", x.bytes},
                   {"seconds", x.m.seconds},
                   {"samples", measurement_json(x.m)}});
  };
  sizes("merge", "rank", p.merge);
  sizes("unmerge", "rank", p.unmerge);
  sizes("load", "rank", p.load);
  sizes("swap_out", "blocks", p.swap_out);
  sizes("swap_in", "blocks", p.swap_in);
  return j.dump(1) + "\n";
}

Profile profile_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw InputError(fmt::format("{}: not a valid JSON profile: {}", source, e.what()));
  }
  const Reader r(source);
  if (!j.is_object())
    throw InputError(fmt::format("{}: not a lorasched profile (not a JSON object)", source));
  const std::string format = r.string(j, "", "format");
  if (format != kProfileFormat)
    throw InputError(fmt::format("{}: format is '{}', not '{}' (not a lorasched profile)", source,
                                 format, kProfileFormat));
  Profile p;
  p.version = static_cast<int>(r.integer(j, "", "version"));
  if (p.version != kProfileVersion)
    throw InputError(
        fmt::format("{}: profile version {}, this lorasched reads version {}; take the "
                    "profile again with `lorasched profile`",
                    source, p.version, kProfileVersion));
  const json& m = r.get(j, "", "machine");
  p.machine.hostname = r.string(m, "machine", "hostname");
  p.machine.cpu_model = r.string(m, "machine", "cpu_model");
  p.machine.threads = static_cast<int>(r.integer(m, "machine", "threads", 0, 1 << 20));
  p.machine.executor = r.string(m, "machine", "executor");
  p.machine.device = r.string(m, "machine", "device");
  p.date = r.string(j, "", "date");
  p.shape = shape_from(r, r.get(j, "", "model"));
  p.element_bytes = static_cast<int>(r.integer(j, "", "element_bytes", 1, 8));
  p.block_size = r.positive(j, "", "block_size");
  p.block_bytes = r.integer(j, "", "block_bytes", 1);
  p.device_memory_bytes = r.number(j, "", "device_memory_bytes");
  p.default_pool_bytes = r.number(j, "", "default_pool_bytes");
  if (p.device_memory_bytes <= 0) r.fail("device_memory_bytes", "must be positive");
  if (p.default_pool_bytes < 0) r.fail("default_pool_bytes", "is negative");
  if (j.contains("seconds_taken")) p.seconds_taken = r.number(j, "", "seconds_taken");
  const json& g = r.get(j, "", "grid");
  p.grid.prefill_tokens = r.ints(g, "grid", "prefill_tokens");
  p.grid.prefill_seqs = r.ints(g, "grid", "prefill_seqs");
  p.grid.decode_batch = r.ints(g, "grid", "decode_batch");
  p.grid.decode_context = r.ints(g, "grid", "decode_context");
  p.grid.ranks = r.ints(g, "grid", "ranks");
  p.grid.swap_blocks = r.ints(g, "grid", "swap_blocks");
  p.grid.max_kv_tokens = r.integer(g, "grid", "max_kv_tokens", 1);
  p.grid.adapter_rotation =
      static_cast<int32_t>(r.integer(g, "grid", "adapter_rotation", 1, INT32_MAX));
  p.grid.repeats = static_cast<int>(r.integer(g, "grid", "repeats", 1, 1 << 20));
  p.grid.warmup = static_cast<int>(r.integer(g, "grid", "warmup", 0, 1 << 20));

  r.each(j, "prefill", [&](const json& x, const std::string& at) {
    p.prefill.push_back(
        {r.positive(x, at, "tokens"), r.positive(x, at, "seqs"), r.measurement(x, at)});
  });
  r.each(j, "decode", [&](const json& x, const std::string& at) {
    p.decode.push_back(
        {r.positive(x, at, "batch"), r.positive(x, at, "context"), r.measurement(x, at)});
  });
  r.each(j, "lora", [&](const json& x, const std::string& at) {
    p.lora.push_back({r.positive(x, at, "tokens"), r.positive(x, at, "adapters"),
                      r.positive(x, at, "rank"), r.measurement(x, at)});
  });
  r.each(j, "mixed", [&](const json& x, const std::string& at) {
    p.mixed.push_back({r.positive(x, at, "prefill_tokens"), r.positive(x, at, "prefill_seqs"),
                       r.positive(x, at, "decode_batch"), r.positive(x, at, "decode_context"),
                       r.measurement(x, at)});
  });
  auto sizes = [&](const char* key, const char* size_key, std::vector<SizePoint>& out) {
    r.each(j, key, [&](const json& x, const std::string& at) {
      out.push_back(
          {r.positive(x, at, size_key), r.integer(x, at, "bytes", 1), r.measurement(x, at)});
    });
  };
  sizes("merge", "rank", p.merge);
  sizes("unmerge", "rank", p.unmerge);
  sizes("load", "rank", p.load);
  sizes("swap_out", "blocks", p.swap_out);
  sizes("swap_in", "blocks", p.swap_in);
  return p;
}

void write_profile(const Profile& p, const fs::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = path.string() + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw Error(ExitCode::runtime, fmt::format("{}: cannot write the profile", tmp.string()));
    out << profile_to_json(p);
    if (!out) throw Error(ExitCode::runtime, fmt::format("{}: write failed", tmp.string()));
  }
  fs::rename(tmp, path, ec);
  if (ec)
    throw Error(ExitCode::runtime, fmt::format("{}: cannot rename to {}: {}", tmp.string(),
                                               path.string(), ec.message()));
}

Profile read_profile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec))
      throw InputError(
          fmt::format("{}: profile file does not exist (take one with `lorasched profile "
                      "-o {}`)",
                      path.string(), path.string()));
    throw InputError(fmt::format("{}: cannot read the profile file", path.string()));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return profile_from_json(ss.str(), path.string());
}

// ---- the cost model ---------------------------------------------------------------------------

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
  }

  std::string describe() const override {
    return fmt::format("profile {} ({} executor on {}, {}, {} threads, model {}, {})", source_,
                       p_.machine.executor, p_.machine.hostname, p_.machine.cpu_model,
                       p_.machine.threads, p_.shape.name, p_.date);
  }

  double iteration(const BatchFeatures& f) const override {
    const double P = static_cast<double>(f.prefill_tokens);
    const double B = f.decode_seqs;
    double t = 0;
    if (P > 0) t += prefill_(P, f.prefill_seqs());
    if (B > 0) t += decode_(B, static_cast<double>(f.decode_context) / B);
    if (P > 0 && B > 0) t -= overhead_;
    if (f.lora_tokens > 0) {
      const double T = static_cast<double>(f.lora_tokens);
      t += lora_(std::max(1, f.distinct_adapters), T, static_cast<double>(f.lora_token_rank) / T);
    }
    return std::max(t, 0.0);
  }

  std::vector<CostStep> switch_steps(const AdapterInfo* from,
                                     const AdapterInfo* to) const override {
    std::vector<CostStep> s;
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
