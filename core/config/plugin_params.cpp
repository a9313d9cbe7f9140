#include "core/config/plugin_params.hpp"

#include <fmt/format.h>
#include <cmath>

#include "core/common/error.hpp"
#include "core/common/strings.hpp"

namespace lorasched {

std::string param_value_text(const api::ParamValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>)
          return "\"" + x + "\"";
        else if constexpr (std::is_same_v<T, bool>)
          return x ? "true" : "false";
        else
          return fmt::format("{}", x);
      },
      v);
}

std::string describe_param(const api::ParamSpec& s) {
  std::string out = api::to_string(s.type);
  if (s.type == api::ParamType::integer || s.type == api::ParamType::real) {
    const bool lo = std::isfinite(s.min), hi = std::isfinite(s.max);
    if (lo && hi)
      out += fmt::format(" in [{}, {}]", s.min, s.max);
    else if (lo)
      out += fmt::format(" >= {}", s.min);
    else if (hi)
      out += fmt::format(" <= {}", s.max);
  }
  if (!s.choices.empty()) out += " one of {" + join(s.choices, ", ") + "}";
  out += ", default " + param_value_text(s.default_value);
  return out;
}

api::Params resolve_params(const PluginConfig& config, const api::PluginInfo& info) {
  api::Params params;
  for (const auto& spec : info.params) params.set(spec.name, spec.default_value);
  std::vector<std::string> names;
  for (const auto& spec : info.params) names.push_back(spec.name);
  const std::string who = fmt::format("{} '{}'", config.table, info.name);
  for (const auto& raw : config.params) {
    auto it = std::find_if(info.params.begin(), info.params.end(),
                           [&](const api::ParamSpec& s) { return s.name == raw.key; });
    if (it == info.params.end())
      throw InputError(fmt::format(
          "{}: unknown parameter '{}' for {}{}{}", raw.pos.str(), raw.key, who,
          did_you_mean(raw.key, names),
          names.empty() ? " (it takes no parameters)" : " (known: " + join(names, ", ") + ")"));
    const api::ParamSpec& spec = *it;
    auto bad_type = [&]() {
      throw InputError(fmt::format("{}: [{}] {} must be {} {}, got {}", raw.pos.str(), config.table,
                                   raw.key, spec.type == api::ParamType::integer ? "an" : "a",
                                   api::to_string(spec.type), param_value_text(raw.value)));
    };
    api::ParamValue v = raw.value;
    switch (spec.type) {
      case api::ParamType::integer:
        if (!std::holds_alternative<int64_t>(v)) bad_type();
        break;
      case api::ParamType::real:
        if (auto* i = std::get_if<int64_t>(&v)) v = static_cast<double>(*i);
        if (!std::holds_alternative<double>(v)) bad_type();
        break;
      case api::ParamType::boolean:
        if (!std::holds_alternative<bool>(v)) bad_type();
        break;
      case api::ParamType::string:
        if (!std::holds_alternative<std::string>(v)) bad_type();
        break;
    }
    if (spec.type == api::ParamType::integer || spec.type == api::ParamType::real) {
      const double x = spec.type == api::ParamType::integer
                           ? static_cast<double>(std::get<int64_t>(v))
                           : std::get<double>(v);
      if (!std::isfinite(x) || x < spec.min || x > spec.max)
        throw InputError(fmt::format("{}: [{}] {} = {} is out of range for {}: must be {}",
                                     raw.pos.str(), config.table, raw.key,
                                     param_value_text(raw.value), who, describe_param(spec)));
    }
    if (spec.type == api::ParamType::string && !spec.choices.empty()) {
      const auto& s = std::get<std::string>(v);
      if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end())
        throw InputError(fmt::format("{}: [{}] {} must be one of {}, got \"{}\"{}", raw.pos.str(),
                                     config.table, raw.key, join(spec.choices, ", "), s,
                                     did_you_mean(s, spec.choices)));
    }
    params.set(spec.name, v);
  }
  return params;
}

}  // namespace lorasched
