// Migration `none`: never moves requests or adapters between replicas.
#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class None : public Migration {
 public:
  explicit None(const CreateArgs&) {}
  MigrationPlan plan(const ClusterView&) override { return {}; }
};

PluginInfo info() { return {kApiVersion, PluginKind::migration, "none", "no migration", {}}; }

}  // namespace

LORASCHED_PLUGIN(None, info)
