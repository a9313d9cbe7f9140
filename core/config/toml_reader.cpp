#include "core/config/toml_reader.hpp"

#include <fmt/format.h>
#include <cmath>
#include <cstdlib>

#include "core/common/strings.hpp"

namespace lorasched {

std::string SourcePos::str() const {
  if (line <= 0) return file;
  return fmt::format("{}:{}:{}", file, line, column);
}

namespace {

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date/time";
    default:
      return "nothing";
  }
}

std::string fmt_num(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

std::string range_text(double min, double max, bool min_exclusive) {
  const bool has_min = std::isfinite(min) && min > -1e17;
  const bool has_max = std::isfinite(max) && max < 1e17;
  if (has_min && has_max)
    return fmt::format("{} {} and <= {}", min_exclusive ? ">" : ">=", fmt_num(min), fmt_num(max));
  if (has_min) return fmt::format("{} {}", min_exclusive ? ">" : ">=", fmt_num(min));
  if (has_max) return fmt::format("<= {}", fmt_num(max));
  return "finite";
}

}  // namespace

TableReader::TableReader(const toml::table& table, std::string dotted, const PositionHints& hints)
    : table_(table), dotted_(std::move(dotted)), hints_(hints) {}

std::string TableReader::where(std::string_view key) const {
  if (dotted_.empty()) return std::string(key);
  return fmt::format("[{}] {}", dotted_, key);
}

SourcePos TableReader::pos_of(const toml::node& n, std::string_view key) const {
  const auto& src = n.source();
  if (src.begin.line > 0)
    return {src.path ? *src.path : hints_.file, static_cast<int>(src.begin.line),
            static_cast<int>(src.begin.column)};
  const std::string full = dotted_.empty() ? std::string(key) : dotted_ + "." + std::string(key);
  for (const auto& [k, p] : hints_.origins)
    if (k == full || full.rfind(k + ".", 0) == 0 || k.rfind(full + ".", 0) == 0) return p;
  return table_pos();
}

SourcePos TableReader::table_pos() const {
  const auto& src = table_.source();
  if (src.begin.line > 0)
    return {src.path ? *src.path : hints_.file, static_cast<int>(src.begin.line),
            static_cast<int>(src.begin.column)};
  for (const auto& [k, p] : hints_.origins)
    if (k == dotted_ || k.rfind(dotted_ + ".", 0) == 0) return p;
  return {hints_.file, 0, 0};
}

void TableReader::fail_at(const toml::node& n, std::string_view key, const std::string& msg) const {
  throw InputError(fmt::format("{}: {} {}", pos_of(n, key).str(), where(key), msg));
}

void TableReader::fail_table(const std::string& msg) const {
  throw InputError(fmt::format("{}: {}", table_pos().str(), msg));
}

const toml::node& TableReader::need(std::string_view key) {
  consumed_.insert(std::string(key));
  return *table_.get(key);
}

std::optional<int64_t> TableReader::opt_int(std::string_view key, double min, double max) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return std::nullopt;
  const auto& n = need(key);
  std::optional<int64_t> v;
  if (auto i = n.value_exact<int64_t>())
    v = *i;
  else if (auto d = n.as_floating_point();
           d && std::floor(d->get()) == d->get() && std::fabs(d->get()) < 9e15)
    v = static_cast<int64_t>(d->get());
  if (!v) fail_at(n, key, fmt::format("must be an integer, got {}", type_name(n)));
  if (static_cast<double>(*v) < min || static_cast<double>(*v) > max)
    fail_at(n, key, fmt::format("must be {} (got {})", range_text(min, max, false), *v));
  return v;
}

std::optional<double> TableReader::opt_real(std::string_view key, double min, double max,
                                            bool min_exclusive) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return std::nullopt;
  const auto& n = need(key);
  std::optional<double> v;
  if (auto d = n.as_floating_point())
    v = d->get();
  else if (auto i = n.as_integer())
    v = static_cast<double>(i->get());
  if (!v) fail_at(n, key, fmt::format("must be a number, got {}", type_name(n)));
  const bool below = min_exclusive ? *v <= min : *v < min;
  if (!std::isfinite(*v) || below || *v > max)
    fail_at(n, key, fmt::format("must be {} (got {})", range_text(min, max, min_exclusive), *v));
  return v;
}

std::optional<bool> TableReader::opt_bool(std::string_view key) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return std::nullopt;
  const auto& n = need(key);
  if (auto b = n.as_boolean()) return b->get();
  fail_at(n, key, fmt::format("must be true or false, got {}", type_name(n)));
}

std::optional<std::string> TableReader::opt_string(std::string_view key,
                                                   const std::vector<std::string>& choices) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return std::nullopt;
  const auto& n = need(key);
  auto s = n.as_string();
  if (!s) fail_at(n, key, fmt::format("must be a string, got {}", type_name(n)));
  std::string v = s->get();
  if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end())
    fail_at(n, key,
            fmt::format("must be one of {}, got \"{}\"{}", join(choices, ", "), v,
                        did_you_mean(v, choices)));
  return v;
}

std::string TableReader::expand(const toml::node& n, std::string_view key,
                                const std::string& text) const {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = text.find("${", i);
    if (start == std::string::npos) {
      out += text.substr(i);
      break;
    }
    out += text.substr(i, start - i);
    const size_t end = text.find('}', start);
    if (end == std::string::npos)
      fail_at(n, key, fmt::format("has an unclosed ${{ in \"{}\"", text));
    const std::string inner = text.substr(start + 2, end - start - 2);
    const size_t dflt = inner.find(":-");
    const std::string name = inner.substr(0, dflt);
    const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
    if (value && *value)
      out += value;
    else if (dflt != std::string::npos)
      out += inner.substr(dflt + 2);
    else
      fail_at(n, key,
              fmt::format("uses ${{{}}}, but the environment variable {} is not set", name, name));
    i = end + 1;
  }
  return out;
}

std::optional<std::string> TableReader::opt_path(std::string_view key) {
  auto s = opt_string(key);
  if (!s) return s;
  return expand(*table_.get(key), key, *s);
}

std::optional<std::vector<std::string>> TableReader::opt_path_list(std::string_view key) {
  auto v = opt_string_list(key);
  if (!v) return v;
  for (auto& s : *v) s = expand(*table_.get(key), key, s);
  return v;
}

std::optional<std::vector<int64_t>> TableReader::opt_int_list(std::string_view key, double min,
                                                              double max) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return std::nullopt;
  const auto& n = need(key);
  std::vector<int64_t> out;
  auto check = [&](const toml::node& e) {
    auto i = e.value_exact<int64_t>();
    if (!i) fail_at(e, key, fmt::format("must hold integers, got {}", type_name(e)));
    if (static_cast<double>(*i) < min || static_cast<double>(*i) > max)
      fail_at(e, key, fmt::format("values must be {} (got {})", range_text(min, max, false), *i));
    out.push_back(*i);
  };
  if (auto arr = n.as_array()) {
    if (arr->empty()) fail_at(n, key, "must not be empty");
    for (const auto& e : *arr) check(e);
  } else {
    check(n);
  }
  return out;
}

std::optional<std::vector<std::string>> TableReader::opt_string_list(std::string_view key) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return std::nullopt;
  const auto& n = need(key);
  std::vector<std::string> out;
  auto check = [&](const toml::node& e) {
    auto s = e.as_string();
    if (!s) fail_at(e, key, fmt::format("must hold strings, got {}", type_name(e)));
    out.push_back(s->get());
  };
  if (auto arr = n.as_array()) {
    for (const auto& e : *arr) check(e);
  } else {
    check(n);
  }
  return out;
}

const toml::table* TableReader::opt_table(std::string_view key) {
  known_.emplace_back(key);
  if (!table_.contains(key)) return nullptr;
  const auto& n = need(key);
  if (auto t = n.as_table()) return t;
  fail_at(n, key, fmt::format("must be a table, got {}", type_name(n)));
}

void TableReader::finish(const std::vector<std::string>& also_known) {
  std::vector<std::string> known = known_;
  known.insert(known.end(), also_known.begin(), also_known.end());
  for (const auto& [k, v] : table_) {
    const std::string key(k.str());
    if (consumed_.count(key)) continue;
    if (std::find(also_known.begin(), also_known.end(), key) != also_known.end()) continue;
    const std::string in = dotted_.empty() ? "at the top level" : fmt::format("in [{}]", dotted_);
    // Point at the key itself when the parser recorded where it is.
    SourcePos at = pos_of(v, key);
    if (k.source().begin.line > 0)
      at = {k.source().path ? *k.source().path : hints_.file,
            static_cast<int>(k.source().begin.line), static_cast<int>(k.source().begin.column)};
    throw InputError(
        fmt::format("{}: unknown key '{}' {}{}", at.str(), key, in, did_you_mean(key, known)));
  }
}

std::optional<api::ParamValue> to_param_value(const toml::node& n) {
  if (auto i = n.value_exact<int64_t>()) return api::ParamValue(*i);
  if (auto d = n.as_floating_point()) return api::ParamValue(d->get());
  if (auto b = n.as_boolean()) return api::ParamValue(b->get());
  if (auto s = n.as_string()) return api::ParamValue(s->get());
  return std::nullopt;
}

}  // namespace lorasched
