// A plugin built for the previous plugin API. tests/sdk/CMakeLists.txt compiles it with
// -DLORASCHED_TEST_FAKE_API_VERSION=<kApiVersion - 1>, and it exports that number as its API
// version, as a plugin compiled against the previous release's headers would. The three
// symbols are written by hand because LORASCHED_PLUGIN stamps the current version.
#include <string>

#include "lorasched/plugin/api.hpp"

#ifndef LORASCHED_TEST_FAKE_API_VERSION
#error "compile with -DLORASCHED_TEST_FAKE_API_VERSION=<the previous kApiVersion>"
#endif
static_assert(LORASCHED_TEST_FAKE_API_VERSION == lorasched::api::kApiVersion - 1,
              "the fixture stands for the previous plugin API version");

namespace {

using namespace lorasched::api;

class OldApi : public Scheduler {
 public:
  explicit OldApi(const CreateArgs&) {}
  IterationPlan plan(const ReplicaView&) override { return {}; }
};

}  // namespace

namespace old_api_exports {
int api_version() { return LORASCHED_TEST_FAKE_API_VERSION; }
PluginInfo info() {
  PluginInfo i;
  i.api_version = LORASCHED_TEST_FAKE_API_VERSION;
  i.kind = PluginKind::scheduler;
  i.name = "old-api";
  i.summary = "test fixture: built for the previous plugin API version";
  return i;
}
void* create(const CreateArgs& args, std::string* error) {
  return create_guarded<OldApi>(args, error);
}
}  // namespace old_api_exports

BOOST_DLL_ALIAS(old_api_exports::api_version, lorasched_plugin_api_version)
BOOST_DLL_ALIAS(old_api_exports::info, lorasched_plugin_info)
BOOST_DLL_ALIAS(old_api_exports::create, lorasched_plugin_create)
