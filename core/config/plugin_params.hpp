// Checks a plugin table of the experiment file against the plugin's declared parameters.
#pragma once

#include "core/config/experiment.hpp"
#include "lorasched/plugin/types.hpp"

namespace lorasched {

// Every declared parameter, from the file or its default. Throws InputError at the line
// of an unknown key ("did you mean"), a wrong type, a value out of range or not among
// the choices.
api::Params resolve_params(const PluginConfig& config, const api::PluginInfo& info);

// "integer in [0, 10], default 1" etc., for `lorasched plugins --describe`.
std::string describe_param(const api::ParamSpec& spec);
std::string param_value_text(const api::ParamValue& v);

}  // namespace lorasched
