// Typed, position-aware reading of one TOML table: every value read is checked for type
// and range, every key not read is reported as unknown with a "did you mean".
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/error.hpp"
#include "core/config/experiment.hpp"

namespace lorasched {

// Positions to use for values that have no source (inserted by a sweep or an override).
struct PositionHints {
  std::string file;
  // dotted key -> where the value came from (the sweep entry or "--set ...")
  std::vector<std::pair<std::string, SourcePos>> origins;
};

class TableReader {
 public:
  // `dotted` is the table's dotted path ("" for the root, "engine", "workload.prompt").
  TableReader(const toml::table& table, std::string dotted, const PositionHints& hints);

  bool has(std::string_view key) const { return table_.contains(key); }
  const toml::node* node(std::string_view key) const { return table_.get(key); }

  std::optional<int64_t> opt_int(std::string_view key, double min = -1e18, double max = 1e18);
  std::optional<double> opt_real(std::string_view key,
                                 double min = -std::numeric_limits<double>::infinity(),
                                 double max = std::numeric_limits<double>::infinity(),
                                 bool min_exclusive = false);
  std::optional<bool> opt_bool(std::string_view key);
  std::optional<std::string> opt_string(std::string_view key,
                                        const std::vector<std::string>& choices = {});
  // A path: a string in which ${NAME} and ${NAME:-default} expand from the environment
  // (e.g. "${LORASCHED_TRACES:-../shared/traces}/conv.csv"); an unset NAME without a
  // default is an error at the key.
  std::optional<std::string> opt_path(std::string_view key);
  std::optional<std::vector<std::string>> opt_path_list(std::string_view key);
  // ${NAME} / ${NAME:-default} expansion of `text`, the value of `key` (node n).
  std::string expand(const toml::node& n, std::string_view key, const std::string& text) const;
  std::optional<std::vector<int64_t>> opt_int_list(std::string_view key, double min, double max);
  std::optional<std::vector<std::string>> opt_string_list(std::string_view key);

  int64_t get_int(std::string_view key, int64_t def, double min = -1e18, double max = 1e18) {
    return opt_int(key, min, max).value_or(def);
  }
  double get_real(std::string_view key, double def,
                  double min = -std::numeric_limits<double>::infinity(),
                  double max = std::numeric_limits<double>::infinity(),
                  bool min_exclusive = false) {
    return opt_real(key, min, max, min_exclusive).value_or(def);
  }
  bool get_bool(std::string_view key, bool def) { return opt_bool(key).value_or(def); }
  std::string get_string(std::string_view key, std::string def,
                         const std::vector<std::string>& choices = {}) {
    return opt_string(key, choices).value_or(std::move(def));
  }

  // One of a closed set of names (EnumName tables of experiment.hpp), as its enum value.
  template <class E, size_t N>
  E get_enum(std::string_view key, E def, const EnumName<E> (&names)[N]) {
    std::vector<std::string> choices;
    for (const auto& n : names) choices.emplace_back(n.name);
    const auto v = opt_string(key, choices);
    if (!v) return def;
    for (const auto& n : names)
      if (*v == n.name) return n.value;
    return def;  // unreachable: opt_string checked the choices
  }

  // A sub-table; nullptr when absent; error when present with another type.
  const toml::table* opt_table(std::string_view key);
  // Marks a key as handled without reading it through this reader.
  void consume(std::string_view key) { consumed_.insert(std::string(key)); }

  // Throws for the first key never read (unknown key).
  void finish(const std::vector<std::string>& also_known = {});

  [[noreturn]] void fail_at(const toml::node& n, std::string_view key,
                            const std::string& msg) const;
  [[noreturn]] void fail_table(const std::string& msg) const;
  SourcePos pos_of(const toml::node& n, std::string_view key) const;
  SourcePos table_pos() const;
  std::string where(std::string_view key) const;  // "[engine] max_batch_size"

 private:
  const toml::node& need(std::string_view key);
  const toml::table& table_;
  std::string dotted_;
  const PositionHints& hints_;
  std::set<std::string> consumed_;
  std::vector<std::string> known_;
};

// Converts a TOML value to a plugin parameter value (integer, real, boolean, string).
std::optional<api::ParamValue> to_param_value(const toml::node& n);

}  // namespace lorasched
