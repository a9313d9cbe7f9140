// Test plugin (migration `hard-faulty`): moves nothing, and on its `after`-th period it
// throws.
#include <stdexcept>
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Faulty : public Migration {
 public:
  explicit Faulty(const CreateArgs& a) : after_(a.params.integer("after")) {}

  MigrationPlan plan(const ClusterView&) override {
    if (++calls_ >= after_) throw std::runtime_error("migration plan exploded on purpose");
    return {};
  }

 private:
  int64_t after_;
  int64_t calls_ = 0;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::migration,
          "hard-faulty",
          "test fixture: a migration plugin that throws mid-run",
          {param_int("after", 2, "the period that throws", 1, 1000000)}};
}

}  // namespace

LORASCHED_PLUGIN(Faulty, info)
