#include "core/engine/replica.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/common/error.hpp"
#include "lorasched/plugin/validate.hpp"

namespace lorasched {

using api::AdapterId;
using api::Mode;
using api::RequestId;
using api::RequestState;

Replica::Replica(ReplicaConfig cfg, const std::vector<AdapterInfo>& adapters,
                 std::unique_ptr<Executor> executor, PluginInstance<api::Scheduler> scheduler,
                 PluginInstance<api::Threshold> threshold, std::vector<Request>& requests,
                 RunRecords& records)
    : cfg_(cfg),
      adapters_(adapters),
      executor_(std::move(executor)),
      scheduler_(std::move(scheduler)),
      threshold_(std::move(threshold)),
      requests_(requests),
      records_(records),
      pool_(cfg.pool_blocks, cfg.block_bytes,
            static_cast<int64_t>(cfg.watermark * static_cast<double>(cfg.pool_blocks)),
            cfg.host_blocks),
      unfinished_per_adapter_(adapters.size(), 0),
      exec_time_(adapters.size(), {0, 0.0}),
      slot_(adapters.size()) {
  queue_.set_num_adapters(static_cast<int32_t>(adapters.size()));
  view_adapters_.resize(adapters.size());
  for (size_t a = 0; a < adapters.size(); ++a)
    view_adapters_[a] = {static_cast<AdapterId>(a), adapters[a].rank, adapters[a].bytes, false, 0};
}

void Replica::event(double time, EventKind kind, AdapterId adapter, RequestId request,
                    double duration, int64_t bytes, double value, double value2) {
  EventRecord e;
  e.time = time;
  e.replica = cfg_.id;
  e.kind = static_cast<int8_t>(kind);
  e.adapter = adapter;
  e.request = request;
  e.duration = duration;
  e.bytes = bytes;
  e.value = value;
  e.value2 = value2;
  records_.events.push_back(e);
}

// ---- queue --------------------------------------------------------------------------------------

namespace {
// What a plugin sees of a request, holding `kv_blocks` KV blocks.
api::RequestView view_of(const Request& r, int32_t kv_blocks) {
  return api::RequestView{
      r.spec.id,   r.spec.adapter, r.spec.arrival, r.spec.prompt_tokens, r.spec.output_tokens,
      r.generated, r.state,        kv_blocks};
}
}  // namespace

void Replica::enqueue(Request& r) {
  // Queued requests count the blocks they hold anywhere (device or host).
  r.queue_slot =
      queue_.push(view_of(r, static_cast<int32_t>(r.block_table.size()) + r.host_blocks));
}

void Replica::requeue(Request& r, RequestState to, api::RequestQueue::End end) {
  LORASCHED_CHECK(queue_.holds(r.queue_slot, r.spec.id), "request {} not in replica {}'s queue",
                  r.spec.id, cfg_.id);
  api::RequestView& v = queue_.request(r.queue_slot);
  v.generated = r.generated;
  v.kv_blocks = static_cast<int32_t>(r.block_table.size()) + r.host_blocks;
  queue_.move(r.queue_slot, to, end);
}

void Replica::dequeue(Request& r) {
  LORASCHED_CHECK(queue_.holds(r.queue_slot, r.spec.id), "request {} not in replica {}'s queue",
                  r.spec.id, cfg_.id);
  // A request that leaves during a step (finished, ignored) takes its plan-check mark with it;
  // between steps all marks are zero, and the slot may lie beyond what any step has used.
  if (std::vector<uint8_t>& listed = scratch().it.listed;
      static_cast<size_t>(r.queue_slot) < listed.size())
    listed[static_cast<size_t>(r.queue_slot)] = 0;
  queue_.erase(r.queue_slot);
  r.queue_slot = -1;
}

// ---- pool ---------------------------------------------------------------------------------------

int64_t Replica::kv_free() const {
#ifndef NDEBUG
  int64_t walked = 0;
  for (const auto& [a, res] : resident_)
    if (evictable(a)) walked += static_cast<int64_t>(res.blocks.size());
  LORASCHED_CHECK(walked == evictable_blocks_, "evictable blocks {} but counted {}", walked,
                  evictable_blocks_);
#endif
  return pool_.free() + (cfg_.unified_pool ? evictable_blocks_ : 0);
}

void Replica::add_resident(AdapterId a, Residency res) {
  const auto i = static_cast<size_t>(a);
  if (slot_[i].resident && evictable(a)) evictable_blocks_ -= slot_[i].blocks;
  slot_[i].blocks = static_cast<int64_t>(res.blocks.size());
  if (evictable(a)) evictable_blocks_ += slot_[i].blocks;
  slot_[i].last_used = res.last_used;
  resident_[a] = std::move(res);
  slot_[i].resident = 1;
  view_adapters_[i].resident = true;
}

void Replica::erase_resident(AdapterId a) {
  const auto i = static_cast<size_t>(a);
  if (!slot_[i].resident) return;
  if (evictable(a)) evictable_blocks_ -= slot_[i].blocks;
  resident_.erase(a);
  slot_[i].resident = 0;
  view_adapters_[i].resident = false;
  slot_[i].blocks = 0;
}

// slot_[a].blocks is 0 for adapters that are not resident, so no residency test is needed.
void Replica::pin(AdapterId a) {
  const auto i = static_cast<size_t>(a);
  if (slot_[i].pinned) return;
  if (evictable(a)) evictable_blocks_ -= slot_[i].blocks;
  slot_[i].pinned = 1;
  pinned_list_.push_back(a);
}

void Replica::unpin_all() {
  for (AdapterId a : pinned_list_) {
    slot_[static_cast<size_t>(a)].pinned = 0;
    if (evictable(a)) evictable_blocks_ += slot_[static_cast<size_t>(a)].blocks;
  }
  pinned_list_.clear();
}

void Replica::set_merged(AdapterId a) {
  auto blocks = [&](AdapterId x) -> int64_t {
    if (x == api::kNoAdapter || slot_[static_cast<size_t>(x)].pinned) return 0;
    return slot_[static_cast<size_t>(x)].blocks;
  };
  if (a == merged_) return;
  evictable_blocks_ += blocks(merged_) - blocks(a);
  merged_ = a;
}

// Frees pool blocks until `blocks` are free by evicting the least recently used adapters
// that neither the merged weights nor the batch being formed need (unified paging).
void Replica::make_room(int64_t blocks, double time) {
  while (pool_.free() < blocks) {
    AdapterId victim = api::kNoAdapter;
    int64_t oldest = INT64_MAX;
    for (const auto& [a, res] : resident_)
      if (a != merged_ && !slot_[static_cast<size_t>(a)].pinned &&
          slot_[static_cast<size_t>(a)].last_used < oldest) {
        oldest = slot_[static_cast<size_t>(a)].last_used;
        victim = a;
      }
    LORASCHED_CHECK(victim != api::kNoAdapter, "no adapter to evict for {} blocks", blocks);
    pool_.release_adapter(resident_[victim].blocks);
    erase_resident(victim);
    executor_->evict_adapter(victim);
    event(time, EventKind::adapter_evict, victim, -1, 0,
          adapters_[static_cast<size_t>(victim)].bytes);
  }
}

bool Replica::allocate_kv(Request& r, int64_t blocks, double time) {
  if (blocks <= 0) return true;
  if (kv_free() < blocks) return false;
  make_room(blocks, time);
  if (r.block_table.capacity() == 0) {  // the table's whole life in one allocation
    const int64_t life = std::min<int64_t>(
        static_cast<int64_t>(r.spec.prompt_tokens) + r.spec.output_tokens, cfg_.max_model_len + 1);
    r.block_table.reserve(static_cast<size_t>(
        std::max<int64_t>(blocks, api::kv_blocks_for(life, cfg_.limits.block_size))));
  }
  for (int64_t i = 0; i < blocks; ++i) r.block_table.push_back(pool_.allocate());
  return true;
}

void Replica::release_kv(Request& r) {
  for (int32_t b : r.block_table) pool_.release(b);
  r.block_table.clear();
  if (r.host_blocks > 0) {
    pool_.host_release(r.host_blocks);
    executor_->drop_swapped(r.spec.id);
    r.host_blocks = 0;
  }
}

bool Replica::preload(AdapterId adapter) {
  if (resident(adapter)) return true;
  const int64_t bytes = adapters_[static_cast<size_t>(adapter)].bytes;
  Residency res;
  if (cfg_.unified_pool) {
    if (pool_.blocks_for_bytes(bytes) > pool_.free()) return false;
    res.blocks = pool_.allocate_adapter(bytes);
  }
  executor_->load_adapter(adapter);
  add_resident(adapter, std::move(res));
  return true;
}

// Makes `adapter` resident for the batch being formed, evicting idle adapters (LRU) when
// the pool needs room. The load is a real copy (cpu) or a predicted transfer (costmodel),
// paid before the batch runs.
bool Replica::ensure_resident(AdapterId adapter, Iteration& it) {
  if (resident(adapter)) {  // flags, not resident_'s tree: this runs once per candidate
    slot_[static_cast<size_t>(adapter)].last_used = iteration_;
    pin(adapter);
    return true;
  }
  const int64_t bytes = adapters_[static_cast<size_t>(adapter)].bytes;
  Residency res;
  if (cfg_.unified_pool) {
    const int64_t need = pool_.blocks_for_bytes(bytes);
    // KV caches of requests waiting for other adapters may fill the pool: preempt the
    // last ready ones (as vLLM picks victims) until the adapter fits, or give up.
    while (kv_free() < need && any_ready()) preempt(last_ready(), it);
    if (kv_free() < need) return false;
    make_room(need, it.start + it.cost);
    res.blocks = pool_.allocate_adapter(bytes);
  }
  const CostStep load = executor_->load_adapter(adapter);
  event(it.start + it.cost, EventKind::adapter_load, adapter, -1, load.seconds, load.bytes);
  it.cost += load.seconds;
  res.last_used = iteration_;
  add_resident(adapter, std::move(res));
  pin(adapter);
  return true;
}

// ---- requests -----------------------------------------------------------------------------------

void Replica::add(RequestId id, double now) {
  Request& r = req(id);
  LORASCHED_CHECK(r.block_table.empty(), "request {} joins replica {} still holding KV blocks", id,
                  cfg_.id);
  r.state = RequestState::waiting;
  r.record.replica = cfg_.id;
  enqueue(r);
  joined(r, now);
}

void Replica::joined(Request& r, double now) {
  ++unfinished_;
  ++unfinished_per_adapter_[static_cast<size_t>(r.spec.adapter)];
  ++view_adapters_[static_cast<size_t>(r.spec.adapter)].unfinished;
  const api::RequestView v = view_of(r, static_cast<int32_t>(r.block_table.size()));
  if (auto st = scheduler_->checked_on_arrival(v, now); !st)
    throw PluginError(scheduler_.describe() + " failed in on_arrival: " + st.message());
}

void Replica::remove(RequestId id) {
  Request& r = req(id);
  LORASCHED_CHECK(r.state == RequestState::waiting || r.state == RequestState::ready ||
                      r.state == RequestState::swapped,
                  "remove of request {} in state {}", id, api::to_string(r.state));
  dequeue(r);
  release_kv(r);
  r.state = RequestState::waiting;
  --unfinished_;
  --unfinished_per_adapter_[static_cast<size_t>(r.spec.adapter)];
  --view_adapters_[static_cast<size_t>(r.spec.adapter)].unfinished;
}

std::span<const int32_t> Replica::insert_with_kv(RequestId id, int64_t blocks, double now) {
  Request& r = req(id);
  LORASCHED_CHECK(r.block_table.empty() && r.host_blocks == 0,
                  "request {} joins replica {} still holding KV blocks", id, cfg_.id);
  LORASCHED_CHECK(allocate_kv(r, blocks, now),
                  "replica {} has no room for the {} KV blocks of request {}", cfg_.id, blocks, id);
  r.state = RequestState::ready;
  r.record.replica = cfg_.id;
  enqueue(r);
  joined(r, now);
  return r.block_table;
}

std::vector<RequestId> Replica::unfinished_requests() const {
  std::vector<RequestId> out;
  out.reserve(static_cast<size_t>(queue_.size()));
  for (RequestState s : {RequestState::waiting, RequestState::ready, RequestState::swapped})
    for (auto slot = queue_.first(s); slot != api::RequestQueue::kNone;
         slot = queue_.next_in_state(slot))
      out.push_back(queue_.node(slot).request.id);
  return out;
}

void Replica::finish(Request& r, RequestStatus status, double now) {
  release_kv(r);
  r.block_table.shrink_to_fit();  // a finished request keeps no memory for its blocks
  dequeue(r);
  r.state = RequestState::finished;
  r.record.status = static_cast<int8_t>(status);
  r.record.finish = now;
  r.record.output_tokens = r.generated;
  --unfinished_;
  --unfinished_per_adapter_[static_cast<size_t>(r.spec.adapter)];
  --view_adapters_[static_cast<size_t>(r.spec.adapter)].unfinished;
  if (status == RequestStatus::finished || status == RequestStatus::length_capped) {
    auto& [n, sum] = exec_time_[static_cast<size_t>(r.spec.adapter)];
    ++n;
    sum += r.exec_time;
  }
}

// vLLM 0.1.4 preemption: swap the KV cache to host memory (dLoRA's artifact always swaps)
// or drop it and recompute the whole context later (put first in the waiting queue).
void Replica::preempt(RequestId id, Iteration& it) {
  Request& r = req(id);
  ++r.record.preemptions;
  it.queues_changed = true;
  const int32_t blocks = static_cast<int32_t>(r.block_table.size());
  if (cfg_.swap_preemption && pool_.host_allocate(blocks)) {
    const CostStep swap = executor_->swap_out(id, r.block_table);
    event(it.start + it.cost, EventKind::preempt_swap, r.spec.adapter, id, swap.seconds,
          swap.bytes);
    it.cost += swap.seconds;
    for (int32_t b : r.block_table) pool_.release(b);
    r.block_table.clear();
    r.host_blocks = blocks;
    r.state = RequestState::swapped;
    requeue(r, RequestState::swapped);
    it.swapped_out = true;
  } else {
    if (cfg_.swap_preemption)
      event(it.start + it.cost, EventKind::warning, r.spec.adapter, id, 0, 0,
            /*value=*/1.0);  // no swap space
    event(it.start + it.cost, EventKind::preempt_recompute, r.spec.adapter, id, 0,
          static_cast<int64_t>(blocks) * cfg_.block_bytes);
    release_kv(r);
    r.state = RequestState::waiting;
    requeue(r, RequestState::waiting, api::RequestQueue::End::front);
  }
}

// ---- one iteration ------------------------------------------------------------------------------

// O(1): the queue and the adapters' views are kept current as they change.
api::ReplicaView Replica::build_view(double now) {
  api::ReplicaView v;
  v.replica = cfg_.id;
  v.now = now;
  v.iteration = iteration_;
  v.num_adapters = static_cast<int32_t>(adapters_.size());
  v.limits = cfg_.limits;
  v.mode = mode();
  v.merged_adapter = merged_;
  v.queued = queue_.all();
  v.adapters = view_adapters_;
  v.kv_blocks_total = pool_.total();
  v.kv_blocks_free = pool_.free();
  v.queue = &queue_;
#ifndef NDEBUG
  check_view(v);
#endif
  return v;
}

// The view against one rebuilt from scratch, as the engine built it before it was kept up to
// date: the three lists stable-sorted by arrival (dLoRA's FCFS), each request's data, the
// adapters. O(queue log queue), debug builds only.
void Replica::check_view(const api::ReplicaView& view) const {
  std::vector<const Request*> want;
  for (RequestState s : {RequestState::waiting, RequestState::ready, RequestState::swapped})
    for (auto slot = queue_.first(s); slot != api::RequestQueue::kNone;
         slot = queue_.next_in_state(slot)) {
      const Request& r = req(queue_.node(slot).request.id);
      LORASCHED_CHECK(r.state == s && r.queue_slot == slot, "request {} is {} in the {} list",
                      r.spec.id, api::to_string(r.state), api::to_string(s));
      want.push_back(&r);
    }
  std::stable_sort(want.begin(), want.end(), [](const Request* a, const Request* b) {
    return a->spec.arrival < b->spec.arrival;
  });
  LORASCHED_CHECK(static_cast<size_t>(view.queued.size()) == want.size(),
                  "view holds {} requests, the lists {}", view.queued.size(), want.size());
  std::vector<int32_t> per_adapter(adapters_.size(), 0);
  size_t i = 0;
  for (const api::RequestView& v : view.queued) {
    const Request& r = *want[i];
    LORASCHED_CHECK(v.id == r.spec.id, "FCFS order differs from a stable sort at {}", i);
    LORASCHED_CHECK(v.adapter == r.spec.adapter && v.arrival == r.spec.arrival &&
                        v.prompt_tokens == r.spec.prompt_tokens &&
                        v.output_tokens == r.spec.output_tokens && v.generated == r.generated &&
                        v.state == r.state &&
                        v.kv_blocks == static_cast<int32_t>(r.block_table.size()) + r.host_blocks,
                    "the view of request {} is stale", r.spec.id);
    ++per_adapter[static_cast<size_t>(v.adapter)];
    ++i;
  }
  for (size_t a = 0; a < adapters_.size(); ++a) {
    const auto id = static_cast<AdapterId>(a);
    auto it = want.begin();
    for (const api::RequestView& v : view.queued_of(id)) {
      it = std::find_if(it, want.end(), [&](const Request* r) { return r->spec.adapter == id; });
      LORASCHED_CHECK(it != want.end() && (*it)->spec.id == v.id,
                      "adapter {}'s order differs from FCFS", a);
      ++it;
    }
    LORASCHED_CHECK(view.queued_of(id).size() == per_adapter[a], "adapter {} counts {}, holds {}",
                    a, view.queued_of(id).size(), per_adapter[a]);
    const api::AdapterView& av = view_adapters_[a];
    LORASCHED_CHECK(av.resident == resident(id) && av.unfinished == unfinished_per_adapter_[a],
                    "the view of adapter {} is stale", a);
  }
}

// api::validate_plan's rules with flags instead of hash sets, in O(plan) (validate_plan walks
// the queue); the engine calls api::validate_plan for the message when this says no.
bool Replica::plan_valid(Iteration& it) {
  const api::IterationPlan& plan = it.plan;
  const auto n = static_cast<AdapterId>(adapters_.size());
  if (plan.mode != Mode::unmerged && plan.mode != Mode::merged && plan.mode != Mode::mixed)
    return false;  // a value outside the enum (admit() would read adapters_[-1])
  if (plan.mode == Mode::merged || plan.mode == Mode::mixed) {
    if (plan.merged_adapter < 0 || plan.merged_adapter >= n) return false;
  } else if (plan.merged_adapter != api::kNoAdapter) {
    return false;
  }
  using api::Tail;
  if (plan.tail != Tail::none && plan.tail != Tail::adapter && plan.tail != Tail::fcfs &&
      plan.tail != Tail::fcfs_until_limit)
    return false;
  if (plan.tail == Tail::adapter && (plan.tail_adapter < 0 || plan.tail_adapter >= n)) return false;
  if (plan.mode == Mode::merged && plan.tail != Tail::none &&
      (plan.tail != Tail::adapter || plan.tail_adapter != plan.merged_adapter))
    return false;
  std::vector<uint8_t>& marks = it.listed;
  std::vector<AdapterId>& marked = it.marked_adapters;
  if (marks.size() < static_cast<size_t>(queue_.slots()))
    marks.resize(static_cast<size_t>(queue_.slots()), 0);
  if (it.tail_seen.size() < static_cast<size_t>(n)) it.tail_seen.resize(static_cast<size_t>(n), 0);
  bool ok = true;
  size_t distinct = 0;
  auto count_adapter = [&](AdapterId a) {
    if (plan.mode == Mode::mixed && a == plan.merged_adapter) return;
    if (!slot_[static_cast<size_t>(a)].mark) {
      slot_[static_cast<size_t>(a)].mark = 1;
      marked.push_back(a);
      ++distinct;
    }
  };
  marked.clear();
  size_t listed = 0;
  for (RequestId id : plan.requests) {
    // Queued here (the slot it names holds it: slots are per replica) and not listed yet.
    if (id < 0 || static_cast<size_t>(id) >= requests_.size() ||
        !queue_.holds(req(id).queue_slot, id) || marks[static_cast<size_t>(req(id).queue_slot)]) {
      ok = false;
      break;
    }
    marks[static_cast<size_t>(req(id).queue_slot)] = 1;
    ++listed;
    const AdapterId a = req(id).spec.adapter;
    if (plan.mode == Mode::merged && a != plan.merged_adapter) {
      ok = false;
      break;
    }
    count_adapter(a);
  }
  if (plan.tail == Tail::adapter) count_adapter(plan.tail_adapter);
  for (AdapterId a : marked) slot_[static_cast<size_t>(a)].mark = 0;
  const int32_t cap = cfg_.limits.max_adapters_per_batch;
  if (ok && plan.mode != Mode::merged && cap > 0 && static_cast<int32_t>(distinct) > cap)
    ok = false;
  if (!ok) {
    for (size_t i = 0; i < listed; ++i)
      marks[static_cast<size_t>(req(plan.requests[i]).queue_slot)] = 0;
  }
  return ok;
}

// Clears the marks of plan_valid (dequeue() cleared those of requests that left).
void Replica::unlist(Iteration& it) {
  std::vector<uint8_t>& listed = it.listed;
  for (RequestId id : it.plan.requests)
    if (req(id).queue_slot >= 0) listed[static_cast<size_t>(req(id).queue_slot)] = 0;
}

template <class F>
void Replica::for_each_candidate(Iteration& it, F&& f) {
  const api::IterationPlan& plan = it.plan;
  for (RequestId id : plan.requests)
    if (!f(id)) return;
  if (plan.tail == api::Tail::none) return;
  api::PlanTail tail(queue_, plan, cfg_.limits.max_adapters_per_batch, it.tail_seen);
  for (RequestId id : plan.requests) tail.listed(req(id).spec.adapter);
  auto is_listed = [&](RequestId id) {  // a request that left (ignored) has no slot
    const int32_t slot = req(id).queue_slot;
    return slot >= 0 && it.listed[static_cast<size_t>(slot)] != 0;
  };
  while (const api::RequestView* r = tail.next(is_listed))
    if (!f(r->id)) return;
}

// One admission pass over the plan's candidates, in order, under the batch limit, the token
// budget and the KV pool (vLLM 0.1.4's _prepare_scheduleroutputs as dLoRA's artifact runs it).
// Adapters are made resident here, candidate by candidate, not in a phase of their own:
// whether a request fits depends on the blocks its adapter's load takes from the pool.
void Replica::admit(Iteration& it) {
  const api::IterationPlan& plan = it.plan;
  std::vector<Admitted>& batch = it.batch;
  batch.clear();
  const int32_t max_batch = cfg_.limits.max_batch_size;
  const int32_t block_size = cfg_.limits.block_size;
  int64_t prompt_tokens = 0, gen_tokens = 0;
  unpin_all();
  if (api::has_merged_weights(plan.mode)) {
    // The merged adapter's weights are folded in before the batch: it must be resident.
    if (!ensure_resident(plan.merged_adapter, it)) return;
  }
  for_each_candidate(it, [&](RequestId id) {
    Request& r = req(id);
    switch (r.state) {
      case RequestState::ready: {
        queue_.move(r.queue_slot, RequestState::running);  // out of `ready` while it is tried
        bool self_preempted = false;
        while (kv_free() < 1) {  // can_append_slot: one free block per sequence
          if (any_ready()) {
            preempt(last_ready(), it);
          } else {
            preempt(id, it);
            self_preempted = true;
            break;
          }
        }
        if (self_preempted) return true;
        if (static_cast<int32_t>(batch.size()) >= max_batch) {
          requeue(r, RequestState::ready);
          return false;  // the batch holds max_batch: admission ends
        }
        // With unified paging, loading its adapter may take the block the check above
        // found: then it cannot run this iteration and goes back to `ready`.
        const int64_t need = api::kv_blocks_for(r.context_tokens(), block_size) -
                             static_cast<int64_t>(r.block_table.size());
        if (!ensure_resident(r.spec.adapter, it) || kv_free() < need) {
          requeue(r, RequestState::ready);
          return true;
        }
        LORASCHED_CHECK(allocate_kv(r, need, it.start + it.cost),
                        "append slot failed for request {}", id);
        batch.push_back({id, false, 1});
        gen_tokens += 1;
        break;
      }
      case RequestState::swapped: {
        if (it.swapped_out) return true;  // vLLM: no swap-in in a call that swapped out
        if (kv_free() - (r.host_blocks + 1) < pool_.watermark()) return true;
        if (static_cast<int32_t>(batch.size()) >= max_batch) {
          return false;  // the batch holds max_batch: admission ends
        }
        if (!ensure_resident(r.spec.adapter, it)) return true;
        if (kv_free() - (r.host_blocks + 1) < pool_.watermark())
          return true;  // the adapter took blocks
        queue_.move(r.queue_slot, RequestState::running);
        const int32_t host = r.host_blocks;
        LORASCHED_CHECK(allocate_kv(r, host, it.start + it.cost),
                        "swap-in allocation failed for request {}", id);
        const CostStep swap = executor_->swap_in(id, r.block_table);
        event(it.start + it.cost, EventKind::swap_in, r.spec.adapter, id, swap.seconds, swap.bytes);
        it.cost += swap.seconds;
        pool_.host_release(host);
        r.host_blocks = 0;
        it.swapped_in = true;
        const int64_t need = api::kv_blocks_for(r.context_tokens(), block_size) -
                             static_cast<int64_t>(r.block_table.size());
        LORASCHED_CHECK(allocate_kv(r, need, it.start + it.cost),
                        "append slot failed for request {}", id);
        batch.push_back({id, false, 1});
        gen_tokens += 1;
        break;
      }
      case RequestState::waiting: {
        const int32_t len = r.context_tokens();
        // A waiting request that has generated tokens ran before (preempted by recomputation,
        // or migrated): its prompt was within the limit. Its recompute prefill may exceed the
        // prompt limit and the token budget; it then runs alone instead of being ignored
        // after producing tokens (docs/hardening.md, "Overload").
        const bool rerun = r.generated > 0;
        if (len > cfg_.limits.prompt_limit && !rerun) {
          event(it.start, EventKind::request_ignored, r.spec.adapter, id, 0, 0, len);
          finish(r, RequestStatus::ignored, it.start);
          it.queues_changed = true;
          return true;
        }
        const int64_t need = api::kv_blocks_for(len, block_size);
        if (kv_free() - need < pool_.watermark()) return true;
        if (prompt_tokens + gen_tokens + len > cfg_.limits.max_batched_tokens &&
            !(rerun && batch.empty()))
          return true;
        if (static_cast<int32_t>(batch.size()) >= max_batch) {
          return false;  // the batch holds max_batch: admission ends
        }
        if (!ensure_resident(r.spec.adapter, it)) return true;
        if (kv_free() - need < pool_.watermark()) return true;  // the adapter took blocks
        queue_.move(r.queue_slot, RequestState::running);
        LORASCHED_CHECK(allocate_kv(r, need, it.start + it.cost),
                        "allocation failed for request {}", id);
        batch.push_back({id, true, len});
        prompt_tokens += len;
        break;
      }
      case RequestState::finished:
        return true;  // ignored (prompt too long) by the first admission pass of this step
      default:
        LORASCHED_CHECK(false, "candidate {} in state {}", id, api::to_string(r.state));
    }
    return true;
  });
}

// Not in dLoRA's artifact, which returns an empty schedule here and spins until its policy's
// own state changes (docs/policies.md, "Relief"): the plan's first waiting or swapped request
// cannot get its blocks while ready requests the plan does not run hold them. Preempts the
// last ready requests until it fits, recorded as a `relief` event followed by their preempt
// events. Returns whether it preempted anything.
bool Replica::relieve(Iteration& it) {
  const int32_t block_size = cfg_.limits.block_size;
  bool relieved = false;
  for_each_candidate(it, [&](RequestId id) {
    const Request& r = req(id);
    if (r.state != RequestState::waiting && r.state != RequestState::swapped) return true;
    int64_t need = r.state == RequestState::waiting
                       ? api::kv_blocks_for(r.context_tokens(), block_size)
                       : r.host_blocks + 1;
    if (cfg_.unified_pool && !resident(r.spec.adapter))
      need += pool_.blocks_for_bytes(adapters_[static_cast<size_t>(r.spec.adapter)].bytes);
    if (need > pool_.total() - pool_.watermark()) return false;  // can never fit
    if (kv_free() - need >= pool_.watermark() || !any_ready()) return false;
    const size_t at = records_.events.size();
    event(it.start + it.cost, EventKind::relief, r.spec.adapter, id, 0, 0,
          static_cast<double>(need));
    int32_t victims = 0;
    while (kv_free() - need < pool_.watermark() && any_ready()) {
      preempt(last_ready(), it);
      ++victims;
    }
    records_.events[at].value2 = victims;
    relieved = true;
    return false;
  });
  return relieved;
}

// A NaN threshold would be recorded as "no threshold in force" (docs/results-format.md) and
// make every comparison of the scheduler false: a plugin fault, not a value to run with.
// (Infinity is a value: "never", e.g. alpha = inf never enters merged mode.)
void Replica::check_thresholds(const api::Thresholds& t) const {
  if (std::isnan(t.alpha) || std::isnan(t.beta))
    throw PluginError(fmt::format("{} returned thresholds alpha = {}, beta = {} (NaN)",
                                  threshold_.describe(), t.alpha, t.beta));
}

// One iteration, phase by phase. Each phase reads what the ones before it left in `it` and
// adds its part; only report_iteration() writes the iteration's record and tells the plugins.
std::optional<double> Replica::step(double now) {
  inflight_.clear();
  if (!has_queued()) return std::nullopt;
  Iteration& it = scratch().it;
  it.reset(now);
  plan_iteration(it);
  // Admission walks the plan's candidates in the queue's order as it was planned: the queue
  // keeps that order until it thaws at the end of the step (requests that ran included).
  queue_.freeze();
  // At the end of the step the queue thaws, and the plan's memory goes back while it is in
  // cache (the next replica's plan reuses it), not at this replica's next step.
  struct StepEnd {
    api::RequestQueue& q;
    api::IterationPlan& plan;
    ~StepEnd() {
      q.thaw();
      plan = {};
    }
  } step_end{queue_, it.plan};
  admit_batch(it);
  if (it.batch.empty()) return idle_until(it);
  switch_weights(it);
  run_batch(it);
  commit_batch(it);
  report_iteration(it);
  ++iteration_;
  return it.end();
}

// A step's scratch is dead between steps, so all replicas stepped on a thread share one:
// it stays in cache. Each replica's own Iteration and ExecBatch (vectors of their own) were
// out of cache at every step of a large cluster, where replicas take turns: at 1,000
// replicas they cost about 13 lines from beyond a 1 MiB cache per iteration, most of them
// write misses, and the plan check's marks (now in the Iteration) 3.6 more
// (docs/performance.md). Per thread, not per process: concurrent simulations
// (a sweep's workers) each keep their own; and fetched at each step, never held by a
// replica, since a replica may be stepped on another thread than the one that built it.
Replica::Scratch& Replica::scratch() {
  static thread_local Scratch s;
  return s;
}

void Replica::Iteration::reset(double at) {
  start = at;
  thresholds = {};
  plan = {};
  decision_us = 0;
  queued = 0;
  cost = 0;
  swapped_in = swapped_out = queues_changed = false;
  batch.clear();
  merged_adapter = api::kNoAdapter;
  duration = 0;
  merged_duration = kNoTime;
  next_tokens.clear();
  prefill_tokens = decode_tokens = distinct_adapters = 0;
  batch_ids.clear();
}

// Plan: asks the scheduler for a plan on a view of the queue as it is now and checks it with
// the API's rules, so that admission can trust it. Reads the thresholds in force (recorded
// with the iteration). Changes nothing in the replica; a failing plugin or an invalid plan
// throws PluginError.
void Replica::plan_iteration(Iteration& it) {
  auto thresholds = threshold_->checked_current();
  if (!thresholds) throw PluginError(threshold_.describe() + " failed: " + thresholds.error());
  check_thresholds(thresholds.value());
  it.thresholds = thresholds.value();

  // The decision: the view (O(1): the queue is kept current), the plan, its check.
  const auto t0 = std::chrono::steady_clock::now();
  const api::ReplicaView view = build_view(it.start);
  auto planned = scheduler_->checked_plan(view);
  if (!planned) throw PluginError(scheduler_.describe() + " failed to plan: " + planned.error());
  it.plan = std::move(planned.value());
  if (!plan_valid(it)) {
    auto st = api::validate_plan(view, it.plan);
    LORASCHED_CHECK(!st, "plan_valid refused a plan validate_plan accepts");
    throw PluginError(scheduler_.describe() + " returned an invalid plan: " + st.message());
  }
#ifndef NDEBUG
  LORASCHED_CHECK(api::validate_plan(view, it.plan), "plan_valid accepted an invalid plan");
#endif
  it.decision_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  it.queued = static_cast<int32_t>(view.queued.size());
}

// Admit: turns the plan into the batch that fits (admit()), making the batch's adapters
// resident and paying loads and swaps on the way. May preempt, swap, load and evict adapters,
// finish requests as ignored; every cost it pays is added to it.cost.
void Replica::admit_batch(Iteration& it) {
  try {
    admit(it);
    // Nothing fits while requests the plan does not run hold the KV cache (e.g. a merged
    // batch whose waiting requests are blocked by other adapters' ready ones): preempt those
    // so the head of the plan can run, instead of waiting forever.
    if (it.batch.empty() && relieve(it)) admit(it);
  } catch (...) {
    // The marks are shared by the replicas stepped on this thread (scratch()): a step that
    // fails (an executor's load or swap) leaves them all zero for the next.
    std::fill(it.listed.begin(), it.listed.end(), uint8_t{0});
    throw;
  }
  unlist(it);
  if (it.swapped_in && it.swapped_out)  // the artifact asserts on this; we record it and go on
    event(it.start, EventKind::warning, api::kNoAdapter, -1, 0, 0, /*value=*/2.0);
}

// Nothing runs. Plan again at once when the queues changed (a preemption, a prompt ignored
// as too long: the artifact's engine simply calls schedule() again), after what was paid
// (loads, swaps; under the `dlora-artifact` timing they cost nothing, so the cost cannot
// tell). Otherwise wait for the next event. Such re-plans at one instant end: an empty
// iteration admits and swaps in nothing, and each change moves a request out of `ready` or
// out of the queue. A load alone changes no queue: it re-plans only when it took time, so a
// policy that flips residency cannot spin at one instant.
std::optional<double> Replica::idle_until(const Iteration& it) const {
  if (it.queues_changed || it.cost > 0) return it.start + it.cost;
  return std::nullopt;
}

// Switch: the weights the plan's mode needs, before the batch runs: fold in the plan's
// adapter, or restore the clean base weights. Changes the executor's weights and merged_;
// the switch's steps are events and add to it.cost.
void Replica::switch_weights(Iteration& it) {
  it.merged_adapter =
      api::has_merged_weights(it.plan.mode) ? it.plan.merged_adapter : api::kNoAdapter;
  if (it.merged_adapter == merged_) return;
  for (const CostStep& s :
       executor_->switch_weights(merged_, it.merged_adapter, cfg_.switch_method)) {
    // A fused switch's event names the adapter it replaced in `value`.
    const double from = s.from == api::kNoAdapter ? kNoTime : static_cast<double>(s.from);
    event(it.start + it.cost, s.kind, s.adapter, -1, s.seconds, s.bytes, from);
    it.cost += s.seconds;
  }
  set_merged(it.merged_adapter);
}

// Run: hands the batch to the executor, which computes it (cpu, cuda) or predicts its time
// (costmodel). Marks the batch's requests running and stamps their first scheduling; the
// iteration's end is known from here, so it is what in_flight() reports.
void Replica::run_batch(Iteration& it) {
  ExecBatch& exec_batch = scratch().exec_batch;
  exec_batch.replica = cfg_.id;
  exec_batch.mode = it.plan.mode;
  exec_batch.merged_adapter = it.merged_adapter;
  const bool tokens = executor_->needs_tokens();
  exec_batch.entries.clear();
  std::vector<AdapterId>& distinct = distinct_;
  distinct.clear();
  for (const Admitted& a : it.batch) {
    Request& r = req(a.id);
    ExecEntry e;
    e.request = a.id;
    e.adapter = r.spec.adapter;
    e.prefill = a.prefill;
    e.new_tokens = a.new_tokens;
    e.context_tokens = r.context_tokens();
    e.block_table = r.block_table;
    if (tokens) {
      LORASCHED_CHECK(static_cast<int32_t>(r.tokens.size()) == r.context_tokens(),
                      "request {} has {} token ids for context {}", a.id, r.tokens.size(),
                      r.context_tokens());
      e.tokens = std::span<const int32_t>(r.tokens).subspan(r.tokens.size() - a.new_tokens);
    }
    (a.prefill ? it.prefill_tokens : it.decode_tokens) += a.new_tokens;
    if (std::find(distinct.begin(), distinct.end(), e.adapter) == distinct.end())
      distinct.push_back(e.adapter);
    exec_batch.entries.push_back(e);
    r.state = RequestState::running;
    if (!r.scheduled) {
      r.scheduled = true;
      r.record.first_scheduled = it.start;
      r.record.queueing_delay = it.start - r.spec.arrival;
    }
  }
  it.distinct_adapters = static_cast<int32_t>(distinct.size());
  IterationResult result = executor_->run(exec_batch);
  it.duration = result.seconds;
  it.merged_duration = result.merged_seconds;
  it.next_tokens = std::move(result.next_tokens);
  inflight_end_ = it.end();
}

// Commit: applies the iteration's outcome to its requests now, stamped with its end: each
// got one token; finished ones leave the replica (their KV blocks freed), the others return
// to `ready` in batch order. Until the end, in_flight() keeps them from migrating. Changes
// the requests, the queue and the KV pool.
void Replica::commit_batch(Iteration& it) {
  const bool tokens = executor_->needs_tokens();
  const double end = it.end();
  it.batch_ids.reserve(it.batch.size());
  for (size_t i = 0; i < it.batch.size(); ++i) {
    Request& r = req(it.batch[i].id);
    it.batch_ids.push_back(r.spec.id);
    r.generated += 1;
    if (tokens) r.tokens.push_back(it.next_tokens[i]);
    if (!r.has_token) {
      r.has_token = true;
      r.record.first_token = end;
    }
    r.exec_time += end - it.start;
    if (r.context_tokens() > cfg_.max_model_len) {
      finish(r, RequestStatus::length_capped, end);
    } else if (r.generated >= r.spec.output_tokens) {
      finish(r, RequestStatus::finished, end);
    } else {
      r.state = RequestState::ready;
      requeue(r, RequestState::ready);
    }
  }
  inflight_ = it.batch_ids;
  inflight_slots_.clear();
  for (RequestId id : inflight_)
    if (const int32_t slot = req(id).queue_slot; slot >= 0) inflight_slots_.push_back(slot);
}

void Replica::prefetch() const {
  // (The event loop fetched the plugin and executor objects' first lines an event ago:
  // plugin_objects().)
  for (RequestId id : inflight_)
    prefetch_bytes(&requests_[static_cast<size_t>(id)], Request::kHotBytes);
  for (int32_t slot : inflight_slots_) queue_.prefetch(slot);
  pool_.prefetch();
  if (pinned_list_.capacity() > 0) __builtin_prefetch(pinned_list_.data());
  // The last batch's adapters (run_batch's distinct_): what admission and the queue read of
  // them; with thousands of adapters per replica these are scattered, one miss each.
  for (AdapterId a : distinct_) {
    __builtin_prefetch(&slot_[static_cast<size_t>(a)]);
    __builtin_prefetch(&adapters_[static_cast<size_t>(a)]);
    queue_.prefetch_adapter(a);
  }
}

// Report: the one place the iteration becomes data: its record (and batch rows) for the
// results and the outcome the scheduler and threshold plugins observe, both from `it`. A
// threshold plugin that changed its thresholds on what it observed leaves an event.
void Replica::report_iteration(const Iteration& it) {
  IterationRecord rec;
  rec.replica = cfg_.id;
  rec.iteration = iteration_;
  rec.start = it.start;
  rec.switch_time = it.cost;
  rec.duration = it.duration;
  rec.merged_duration = it.merged_duration;
  rec.mode = static_cast<int8_t>(it.plan.mode);
  rec.merged_adapter = it.merged_adapter;
  rec.batch_size = static_cast<int32_t>(it.batch.size());
  rec.prefill_tokens = it.prefill_tokens;
  rec.decode_tokens = it.decode_tokens;
  rec.distinct_adapters = it.distinct_adapters;
  rec.queued = it.queued;
  rec.kv_blocks_used = pool_.used();  // after the finished requests released theirs
  rec.alpha = it.thresholds.alpha;
  rec.beta = it.thresholds.beta;
  rec.decision_wall_us = it.decision_us;
  records_.iterations.push_back(rec);
  if (cfg_.log_batches)
    for (size_t i = 0; i < it.batch_ids.size(); ++i)
      records_.batches.push_back({iteration_, cfg_.id, it.batch_ids[i], static_cast<int32_t>(i)});

  api::IterationOutcome out;
  out.replica = rec.replica;
  out.iteration = rec.iteration;
  out.start = rec.start;
  out.switch_time = rec.switch_time;
  out.duration = rec.duration;
  out.mode = it.plan.mode;
  out.merged_adapter = rec.merged_adapter;
  out.batch_size = rec.batch_size;
  out.prefill_tokens = rec.prefill_tokens;
  out.decode_tokens = rec.decode_tokens;
  out.distinct_adapters = rec.distinct_adapters;
  out.batch = it.batch_ids;
  if (auto st = scheduler_->checked_observe(out); !st)
    throw PluginError(scheduler_.describe() + " failed in observe: " + st.message());
  if (auto st = threshold_->checked_observe(out); !st)
    throw PluginError(threshold_.describe() + " failed in observe: " + st.message());
  auto after = threshold_->checked_current();
  if (!after) throw PluginError(threshold_.describe() + " failed: " + after.error());
  check_thresholds(after.value());
  if (after.value().alpha != it.thresholds.alpha || after.value().beta != it.thresholds.beta)
    event(it.start, EventKind::threshold_change, api::kNoAdapter, -1, 0, 0, after.value().alpha,
          after.value().beta);
}

}  // namespace lorasched
