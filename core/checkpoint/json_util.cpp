#include "core/checkpoint/json_util.hpp"

#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "core/checkpoint/safetensors.hpp"
#include "core/common/error.hpp"

namespace lorasched::checkpoint::detail {

namespace {
// nlohmann's messages are one line already; make sure.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}
struct TooDeep {};
}  // namespace

template <class J>
std::string brief(const J& v, size_t max_chars) {
  std::string s = one_line(v.dump());
  if (s.size() > max_chars) s = s.substr(0, max_chars - 3) + "...";
  return s;
}

template <class J>
StrictJson<J> parse_strict(std::string_view text, size_t max_depth) {
  StrictJson<J> out;
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string top_key;                      // the last key of the top-level object
  size_t depth = 0;
  auto cb = [&](int, typename J::parse_event_t ev, J& parsed) {
    using E = typename J::parse_event_t;
    if (ev == E::object_start || ev == E::array_start) {
      if (++depth > max_depth) throw TooDeep{};
    } else if (ev == E::object_end || ev == E::array_end) {
      --depth;
    }
    if (ev == E::object_start) {
      keys.emplace_back();
    } else if (ev == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == E::key && !keys.empty()) {
      const auto& k = parsed.template get_ref<const std::string&>();
      if (!keys.back().insert(k).second && !out.duplicate)
        out.duplicate = DuplicateKey{k, keys.size() == 1 ? std::string() : top_key};
      if (keys.size() == 1) top_key = k;
    }
    return true;
  };
  try {
    out.value = J::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    out.error = one_line(e.what());
  } catch (const TooDeep&) {
    out.too_deep = true;
  }
  return out;
}

template StrictJson<nlohmann::json> parse_strict(std::string_view, size_t);
template StrictJson<nlohmann::ordered_json> parse_strict(std::string_view, size_t);
template std::string brief(const nlohmann::json&, size_t);
template std::string brief(const nlohmann::ordered_json&, size_t);

Json read_json_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw InputError(fmt::format("{}: not found", path.string()));
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) throw InputError(fmt::format("{}: cannot read", path.string()));
  const std::string text = ss.str();

  auto parsed = parse_strict<Json>(text, 64);
  if (!parsed.error.empty())
    throw InputError(fmt::format("{}: not valid JSON: {}", path.string(), parsed.error));
  if (parsed.too_deep)
    throw InputError(fmt::format("{}: nests deeper than 64 levels", path.string()));
  if (parsed.duplicate) {
    const std::string& k = parsed.duplicate->key;
    throw InputError(fmt::format("{}: duplicate key {}", path.string(),
                                 quote_name(k.empty() ? std::string("\"\"") : k)));
  }
  Json& j = parsed.value;
  if (!j.is_object())
    throw InputError(fmt::format("{}: not a JSON object (it is {})", path.string(), j.type_name()));
  return std::move(j);
}

void JsonFile::fail(std::string_view key, const std::string& msg) const {
  throw InputError(fmt::format("{}: {}: {}", path.string(), key, msg));
}

const Json* JsonFile::get(std::string_view key) const {
  auto it = root.find(std::string(key));
  if (it == root.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<long long> JsonFile::opt_int(std::string_view key, long long min,
                                           long long max) const {
  const Json* v = get(key);
  if (v == nullptr) return std::nullopt;
  long long x = 0;
  if (v->is_number_unsigned()) {
    const auto u = v->get<unsigned long long>();
    if (u > static_cast<unsigned long long>(max))
      fail(key, fmt::format("{} is out of range [{}, {}]", u, min, max));
    x = static_cast<long long>(u);
  } else if (v->is_number_integer()) {
    x = v->get<long long>();
  } else {
    fail(key, fmt::format("expected an integer, found {}", brief(*v)));
  }
  if (x < min || x > max) fail(key, fmt::format("{} is out of range [{}, {}]", x, min, max));
  return x;
}

int JsonFile::req_int(std::string_view key, int min) const {
  auto v = opt_int(key, min, std::numeric_limits<int>::max());
  if (!v) fail(key, "missing (required)");
  return static_cast<int>(*v);
}

std::optional<double> JsonFile::opt_number(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) fail(key, fmt::format("expected a number, found {}", brief(*v)));
  return v->get<double>();
}

std::optional<bool> JsonFile::opt_bool(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) fail(key, fmt::format("expected true or false, found {}", brief(*v)));
  return v->get<bool>();
}

std::optional<std::string> JsonFile::opt_string(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) fail(key, fmt::format("expected a string, found {}", brief(*v)));
  return v->get<std::string>();
}

}  // namespace lorasched::checkpoint::detail
