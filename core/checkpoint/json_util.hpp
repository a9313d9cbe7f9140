// Internal helpers of the checkpoint loaders: reading a JSON file (duplicate keys are an
// error) and typed access to its keys with one-line InputErrors naming the file and key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace lorasched::checkpoint::detail {

using Json = nlohmann::ordered_json;  // keeps key order (rank_pattern is order-sensitive)

// Parses `path`; InputError naming it when it is missing, unreadable, not JSON, not an object or
// has a duplicate key.
Json read_json_file(const std::filesystem::path& path);

// The value as a one-line string for messages (shortened).
std::string brief(const Json& v);

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
