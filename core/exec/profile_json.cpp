#include "core/exec/profile_json.hpp"

#include <fmt/format.h>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "core/common/error.hpp"

namespace fs = std::filesystem;

namespace lorasched {

using json = nlohmann::ordered_json;

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
  sizes("switch", "rank", p.switches);
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
  if (j.contains("switch")) sizes("switch", "rank", p.switches);
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
}  // namespace lorasched
