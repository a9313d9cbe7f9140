// Internal helpers of the checkpoint loaders, the one JSON reading path of config.json,
// generation_config.json, adapter_config.json, model.safetensors.index.json and the safetensors
// header (all through nlohmann-json): strict parsing (duplicate keys found, nesting bounded),
// reading a JSON file, and typed access to its keys with one-line InputErrors naming the file
// and key.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace lorasched::checkpoint::detail {

using Json = nlohmann::ordered_json;  // keeps key order (rank_pattern is order-sensitive)

// A key that appears twice in one object (nlohmann keeps the last silently): the key, and the
// top-level key whose value holds that object (empty when the duplicate is a top-level key).
struct DuplicateKey {
  std::string key;
  std::string inside;
};

// JSON text parsed strictly. One of: `error` (a one-line syntax error), `too_deep` (objects and
// arrays nest deeper than the limit), or `value`, with `duplicate` set for the first repeated
// key. Callers word the messages (a file, a safetensors header).
template <class J>
struct StrictJson {
  J value;
  std::string error;
  bool too_deep = false;
  std::optional<DuplicateKey> duplicate;
};
template <class J>  // nlohmann::json or nlohmann::ordered_json
StrictJson<J> parse_strict(std::string_view text, size_t max_depth);

// Parses `path`; InputError naming it when it is missing, unreadable, not JSON, not an object or
// has a duplicate key.
Json read_json_file(const std::filesystem::path& path);

// The value as a one-line string for messages, shortened to `max_chars`.
template <class J>
std::string brief(const J& v, size_t max_chars = 80);

// Typed accessors. `absent` covers both a missing key and null. The errors name file and key.
struct JsonFile {
  std::filesystem::path path;
  Json root;

  [[noreturn]] void fail(std::string_view key, const std::string& msg) const;
  const Json* get(std::string_view key) const;  // nullptr when missing or null
  // An integer (not bool, not float) in [min, max].
  std::optional<long long> opt_int(std::string_view key, long long min, long long max) const;
  int req_int(std::string_view key, int min) const;
  std::optional<double> opt_number(std::string_view key) const;
  std::optional<bool> opt_bool(std::string_view key) const;
  std::optional<std::string> opt_string(std::string_view key) const;
};

}  // namespace lorasched::checkpoint::detail
