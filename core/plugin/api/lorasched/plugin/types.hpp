// Basic vocabulary of the plugin API: ids, modes, errors as values, typed parameters.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace lorasched::api {

// Version of the plugin API (these headers). A plugin built against another version is
// refused by the loader. Bump it on any change to a type or virtual function in
// lorasched/plugin/*.hpp (see docs/plugin-guide.md, "API evolution").
// History: 1 first release; 2 added Mode::mixed; 3 the incremental queue (ReplicaView::queued
// a QueueRange, queued_of(), ReplicaView::queue) and plan tails (IterationPlan::tail); 4
// cluster-view indexes (ClusterView::adapter_hosts, least_loaded,
// ReplicaState::active_adapters).
inline constexpr int kApiVersion = 5;

using RequestId = int64_t;
using AdapterId = int32_t;
inline constexpr AdapterId kNoAdapter = -1;

// How an iteration runs its LoRA adapters (dLoRA's terms): merged = one adapter's
// weights are folded into the base weights and the batch holds only its requests;
// unmerged = base weights stay clean and every request's LoRA term is computed beside
// the base GEMM (Punica/S-LoRA style), so a batch can mix adapters; mixed = one adapter
// merged, and requests of other adapters run beside it through the unmerged path with
// the merged adapter's term subtracted (y = W'x + s_i B_i A_i x - s_h B_h A_h x).
enum class Mode : uint8_t { unmerged = 0, merged = 1, mixed = 2 };

inline const char* to_string(Mode m) {
  switch (m) {
    case Mode::unmerged:
      return "unmerged";
    case Mode::merged:
      return "merged";
    case Mode::mixed:
      return "mixed";
  }
  return "?";
}
// Whether the weights hold a merged adapter in this mode.
inline bool has_merged_weights(Mode m) { return m != Mode::unmerged; }

enum class PluginKind : uint8_t { scheduler = 0, threshold = 1, migration = 2, dispatcher = 3 };

inline const char* to_string(PluginKind k) {
  switch (k) {
    case PluginKind::scheduler:
      return "scheduler";
    case PluginKind::threshold:
      return "threshold";
    case PluginKind::migration:
      return "migration";
    case PluginKind::dispatcher:
      return "dispatcher";
  }
  return "?";
}

// ---- errors as values ---------------------------------------------------------------------

class Status {
 public:
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message)); }
  bool is_ok() const { return !message_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const std::string& message() const {
    static const std::string kEmpty;
    return message_ ? *message_ : kEmpty;
  }

 private:
  Status() = default;
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {
    if (std::get<Status>(v_).is_ok()) v_ = Status::error("error without a message");
  }
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  const std::string& error() const { return std::get<Status>(v_).message(); }

 private:
  std::variant<T, Status> v_;
};

// ---- typed parameters (gem5 style: type, default, range, help) ----------------------------

enum class ParamType : uint8_t { integer, real, boolean, string };

inline const char* to_string(ParamType t) {
  switch (t) {
    case ParamType::integer:
      return "integer";
    case ParamType::real:
      return "real";
    case ParamType::boolean:
      return "boolean";
    case ParamType::string:
      return "string";
  }
  return "?";
}

using ParamValue = std::variant<int64_t, double, bool, std::string>;

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::real;
  ParamValue default_value = 0.0;
  std::string help;
  double min = -std::numeric_limits<double>::infinity();  // integer and real only
  double max = std::numeric_limits<double>::infinity();
  std::vector<std::string> choices;  // string only; empty = any string
};

// Builders for parameter specs, so a plugin's info record reads like a table.
inline ParamSpec param_real(std::string name, double def, std::string help,
                            double min = -std::numeric_limits<double>::infinity(),
                            double max = std::numeric_limits<double>::infinity()) {
  return {std::move(name), ParamType::real, def, std::move(help), min, max, {}};
}
inline ParamSpec param_int(std::string name, int64_t def, std::string help,
                           double min = -std::numeric_limits<double>::infinity(),
                           double max = std::numeric_limits<double>::infinity()) {
  return {std::move(name), ParamType::integer, def, std::move(help), min, max, {}};
}
inline ParamSpec param_bool(std::string name, bool def, std::string help) {
  return {std::move(name), ParamType::boolean, def, std::move(help), 0, 0, {}};
}
inline ParamSpec param_choice(std::string name, std::string def, std::vector<std::string> choices,
                              std::string help) {
  return {std::move(name),   ParamType::string, std::move(def), std::move(help), 0, 0,
          std::move(choices)};
}

// The values of a plugin's parameters, already checked against its specs by the host and
// completed with defaults: every declared name is present with its declared type.
class Params {
 public:
  Params() = default;
  explicit Params(std::map<std::string, ParamValue> values) : values_(std::move(values)) {}

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  int64_t integer(const std::string& name) const { return std::get<int64_t>(at(name)); }
  double real(const std::string& name) const {
    const auto& v = at(name);
    if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
    return std::get<double>(v);
  }
  bool boolean(const std::string& name) const { return std::get<bool>(at(name)); }
  const std::string& string(const std::string& name) const {
    return std::get<std::string>(at(name));
  }
  const std::map<std::string, ParamValue>& values() const { return values_; }
  void set(const std::string& name, ParamValue v) { values_[name] = std::move(v); }

 private:
  const ParamValue& at(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) throw std::out_of_range("undeclared plugin parameter '" + name + "'");
    return it->second;
  }
  std::map<std::string, ParamValue> values_;
};

// What a plugin library says about itself. Exported as a function through a Boost.DLL
// alias; the host reads it only after the API version matched.
struct PluginInfo {
  int api_version = kApiVersion;
  PluginKind kind = PluginKind::scheduler;
  std::string name;     // what experiment files write, e.g. "dlora"
  std::string summary;  // one line
  std::vector<ParamSpec> params;
};

}  // namespace lorasched::api
