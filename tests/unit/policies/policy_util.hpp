// Loads built-in policy plugins from the build tree and creates them with parameters.
#pragma once

#include <map>
#include <string>

#include "core/plugin/loader.hpp"
#include "lorasched/plugin/testkit.hpp"

namespace lorasched::test {

inline PluginRegistry& registry() {
  static PluginRegistry r(plugin_search_path());
  return r;
}

template <class T>
PluginInstance<T> load(const std::string& name,
                       const std::map<std::string, api::ParamValue>& params = {},
                       api::Threshold* threshold = nullptr, int32_t num_adapters = 4,
                       api::ReplicaLimits limits = {}) {
  auto lib = registry().find(api::kind_of<T>(), name);
  api::CreateArgs args;
  args.params = testkit::params_for(lib->info, params);
  args.seed = 1;
  args.num_adapters = num_adapters;
  if (limits.max_adapters_per_batch == 0) limits.max_adapters_per_batch = num_adapters;
  args.limits = limits;
  args.threshold = threshold;
  return instantiate<T>(lib, args);
}

inline api::IterationPlan plan(api::Scheduler& s, const api::ReplicaView& v) {
  auto r = s.checked_plan(v);
  if (!r) throw std::runtime_error("plan failed: " + r.error());
  auto st = api::validate_plan(v, r.value());
  if (!st) throw std::runtime_error("invalid plan: " + st.message());
  return r.value();
}

}  // namespace lorasched::test
