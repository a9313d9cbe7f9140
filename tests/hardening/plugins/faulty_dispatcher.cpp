// Test plugin (dispatcher `hard-faulty`): round robin, and on its `after`-th request it
// throws (fault = "throws") or sends the request to replica 1000 (fault = "bad-replica").
#include <stdexcept>
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Faulty : public Dispatcher {
 public:
  explicit Faulty(const CreateArgs& a)
      : fault_(a.params.string("fault")), after_(a.params.integer("after")) {}

  DispatchDecision dispatch(const ClusterView& v, const DispatchRequest&) override {
    ++calls_;
    if (calls_ >= after_) {
      if (fault_ == "throws") throw std::runtime_error("dispatch exploded on purpose");
      return {1000, kNoAdapter};
    }
    return {static_cast<int32_t>(calls_ % static_cast<int64_t>(v.replicas.size())), kNoAdapter};
  }

 private:
  std::string fault_;
  int64_t after_;
  int64_t calls_ = 0;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::dispatcher,
          "hard-faulty",
          "test fixture: a dispatcher that fails mid-run",
          {param_choice("fault", "throws", {"throws", "bad-replica"}, "what goes wrong"),
           param_int("after", 5, "the request that goes wrong", 1, 1000000)}};
}

}  // namespace

LORASCHED_PLUGIN(Faulty, info)
