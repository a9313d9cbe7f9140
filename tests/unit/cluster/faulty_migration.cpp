// Test plugin (migration `test-faulty`): returns one kind of bad or failed plan on its first
// call where it can, so the tests see how the simulation checks migration plans (or, with
// fault = "move-ready", one valid plan moving the ready requests of the first replica that
// has some to the next replica).
#include <string>

#include "lorasched/plugin/api.hpp"

namespace {

using namespace lorasched::api;

class Faulty : public Migration {
 public:
  explicit Faulty(const CreateArgs& a) : fault_(a.params.string("fault")) {}

  MigrationPlan plan(const ClusterView& v) override {
    MigrationPlan p;
    if (done_ || v.replicas.size() < 2) return p;
    const int32_t R = static_cast<int32_t>(v.replicas.size());
    auto first = [&](RequestState st, int32_t& rep) -> const RequestView* {
      for (const auto& s : v.replicas)
        for (const auto& r : s.requests)
          if (r.state == st) {
            rep = s.replica;
            return &r;
          }
      return nullptr;
    };
    int32_t rep = 0;
    if (fault_ == "unknown") {
      p.moves.push_back({1000000000, 0, 1});
    } else if (fault_ == "running") {
      const RequestView* r = first(RequestState::running, rep);
      if (!r) return p;
      p.moves.push_back({r->id, rep, (rep + 1) % R});
    } else if (fault_ == "not-on-from") {
      const RequestView* r = first(RequestState::waiting, rep);
      if (!r) r = first(RequestState::ready, rep);
      if (!r) return p;
      p.moves.push_back({r->id, (rep + 1) % R, (rep + 2) % R});
    } else if (fault_ == "range") {
      const RequestView* r = first(RequestState::ready, rep);
      if (!r) return p;
      p.moves.push_back({r->id, rep, R + 5});
    } else if (fault_ == "nomem") {
      // Every ready request of the cluster to the replica with the least free memory.
      int32_t to = 0;
      int64_t least = INT64_MAX;
      for (const auto& s : v.replicas)
        if (s.kv_blocks_total - s.kv_blocks_used < least) {
          least = s.kv_blocks_total - s.kv_blocks_used;
          to = s.replica;
        }
      for (const auto& s : v.replicas)
        if (s.replica != to)
          for (const auto& r : s.requests)
            if (r.state == RequestState::ready) p.moves.push_back({r.id, s.replica, to});
      if (p.moves.empty()) return p;
    } else if (fault_ == "move-ready") {  // a valid plan: ready requests to the next replica
      for (const auto& s : v.replicas) {
        for (const auto& r : s.requests)
          if (r.state == RequestState::ready)
            p.moves.push_back({r.id, s.replica, (s.replica + 1) % R});
        if (!p.moves.empty()) break;
      }
      if (p.moves.empty()) return p;
    } else if (fault_ == "time limit fallback") {  // ready requests moved, status time limit
      for (const auto& s : v.replicas) {
        for (const auto& r : s.requests)
          if (r.state == RequestState::ready)
            p.moves.push_back({r.id, s.replica, (s.replica + 1) % R});
        if (!p.moves.empty()) break;
      }
      if (p.moves.empty()) return p;
      p.has_report = true;
      p.report.status = "time limit";
      p.report.solve_time = 0.5;
    } else if (fault_ == "infeasible" || fault_ == "time limit") {
      p.has_report = true;
      p.report.status = fault_;
      p.report.solve_time = 0.25;
    }
    done_ = true;
    return p;
  }

 private:
  std::string fault_;
  bool done_ = false;
};

PluginInfo info() {
  return {kApiVersion,
          PluginKind::migration,
          "test-faulty",
          "test plugin: one bad or failed migration plan",
          {param_choice("fault", "unknown",
                        {"unknown", "running", "not-on-from", "range", "nomem", "infeasible",
                         "time limit", "move-ready", "time limit fallback"},
                        "which fault (move-ready: a valid plan moving ready requests; time "
                        "limit fallback: the same plan with status time limit)")}};
}

}  // namespace

LORASCHED_PLUGIN(Faulty, info)
