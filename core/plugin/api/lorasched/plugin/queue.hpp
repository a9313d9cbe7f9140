// A replica's queue: the requests a scheduler sees (ReplicaView::queued), and the one piece
// of code that keeps them in dLoRA's FCFS order while they arrive, change state and leave.
//
// The engine keeps one RequestQueue per replica and changes it where a request changes (a few
// link steps each), so a view costs nothing to build however long the queue is; the plugin
// test kit builds its views with the same class, so a hand-built view is ordered exactly as
// the engine orders it. Policies only read it, walking from the front:
//
//   for (const RequestView& r : view.queued) ...         // every queued request, FCFS
//   for (const RequestView& r : view.queued_of(a)) ...   // adapter a's, in the same order
//   view.queued.size(), view.queued_of(a).size()         // counts, free
//
// A walk costs one step per request: stop as soon as you have what you need. A plan rarely
// needs more than the first B; IterationPlan::tail hands the rest of a queue to the engine
// without listing it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

#include "lorasched/plugin/types.hpp"

namespace lorasched::api {

// dLoRA / vLLM 0.1.4 request states. waiting: not prefilled (or preempted by
// recomputation); ready: KV cache on the device, waiting for its next iteration; swapped:
// KV cache in host memory; running: in the iteration being executed.
enum class RequestState : uint8_t {
  waiting = 0,
  ready = 1,
  swapped = 2,
  running = 3,
  finished = 4
};

inline const char* to_string(RequestState s) {
  switch (s) {
    case RequestState::waiting:
      return "waiting";
    case RequestState::ready:
      return "ready";
    case RequestState::swapped:
      return "swapped";
    case RequestState::running:
      return "running";
    case RequestState::finished:
      return "finished";
  }
  return "?";
}

struct RequestView {
  RequestId id = 0;
  AdapterId adapter = 0;
  double arrival = 0;  // seconds of virtual time
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;  // tokens it will generate in total (EOS ignored, as in dLoRA)
  int32_t generated = 0;      // tokens generated so far
  RequestState state = RequestState::waiting;
  int32_t kv_blocks = 0;  // KV blocks it holds (device or host when swapped)
  int32_t context_tokens() const { return prompt_tokens + generated; }
};

// One queued request and its links in the queue's three orders (slots of RequestQueue).
// Policies reach it only through QueueRange; the links are RequestQueue's business. The
// forward FCFS links, which every walk follows, are kept apart (QueueLinks, by slot) from the
// rest: a walk's chain of loads then stays in one small array instead of touching a node's
// second cache line per step, and the requests it reaches are loaded independently.
struct QueueNode {
  RequestView request;
  int64_t seq = 0;               // place in its state's list (smaller = nearer the front)
  int32_t prev = -1;             // FCFS order, all requests
  int32_t prev_of_adapter = -1;  // FCFS order, its adapter's requests
  int32_t next_in_state = -1, prev_in_state = -1;  // its state's list
  uint8_t flags = 0;
};
struct QueueLinks {
  int32_t next = -1;             // FCFS order, all requests
  int32_t next_of_adapter = -1;  // FCFS order, its adapter's requests
};

// A walk over queued requests from the front, in FCFS order: all of them, or one adapter's.
class QueueRange {
 public:
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = RequestView;
    using difference_type = std::ptrdiff_t;
    using pointer = const RequestView*;
    using reference = const RequestView&;
    iterator() = default;
    iterator(const QueueNode* nodes, const QueueLinks* links, int32_t at, bool of_adapter)
        : nodes_(nodes), links_(links), at_(at), of_adapter_(of_adapter) {}
    reference operator*() const { return nodes_[at_].request; }
    pointer operator->() const { return &nodes_[at_].request; }
    iterator& operator++() {
      at_ = of_adapter_ ? links_[at_].next_of_adapter : links_[at_].next;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++*this;
      return old;
    }
    bool operator==(const iterator& o) const { return at_ == o.at_; }
    bool operator!=(const iterator& o) const { return at_ != o.at_; }

   private:
    const QueueNode* nodes_ = nullptr;
    const QueueLinks* links_ = nullptr;
    int32_t at_ = -1;
    bool of_adapter_ = false;
  };

  QueueRange() = default;
  QueueRange(const QueueNode* nodes, const QueueLinks* links, int32_t head, int32_t size,
             bool of_adapter)
      : nodes_(nodes), links_(links), head_(head), size_(size), of_adapter_(of_adapter) {}
  iterator begin() const { return {nodes_, links_, head_, of_adapter_}; }
  iterator end() const { return {nodes_, links_, -1, of_adapter_}; }
  int32_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const RequestView& front() const { return nodes_[head_].request; }

 private:
  const QueueNode* nodes_ = nullptr;
  const QueueLinks* links_ = nullptr;
  int32_t head_ = -1;
  int32_t size_ = 0;
  bool of_adapter_ = false;
};

// The queue of one replica. Every request in it is in one of three state lists — waiting,
// ready, swapped, each in the order the engine put requests there (vLLM's lists: back for
// arrivals and returns, front for a recomputed request) — and in the FCFS order that policies
// see: oldest arrival first, ties in the order waiting, ready, swapped, then as in their
// list (a stable sort of the three lists one after the other, dLoRA's FCFS), all requests and
// per adapter. A request of the iteration being formed is `running`: in no state list.
//
// While frozen (the engine freezes the queue while it admits a plan), state lists change at
// once but the FCFS orders stay as they were at freeze(), so a walk started before sees the
// same requests in the same order; thaw() puts the requests that moved at their new places
// (a few steps each: a request keeps its arrival, so it moves only among equal arrivals) and
// drops the erased ones.
class RequestQueue {
 public:
  using Slot = int32_t;
  static constexpr Slot kNone = -1;
  enum class End : uint8_t { back = 0, front = 1 };

  RequestQueue() = default;
  explicit RequestQueue(int32_t num_adapters) { set_num_adapters(num_adapters); }
  void set_num_adapters(int32_t n) {
    adapter_.resize(static_cast<size_t>(n));
    adapter_size_.resize(static_cast<size_t>(n));
  }
  int32_t num_adapters() const { return static_cast<int32_t>(adapter_.size()); }

  // ---- reading --------------------------------------------------------------------------
  QueueRange all() const { return {nodes_.data(), links_.data(), fcfs_.head, fcfs_.size, false}; }
  QueueRange of_adapter(AdapterId a) const {
    return {nodes_.data(), links_.data(), adapter_[static_cast<size_t>(a)].head,
            adapter_size_[static_cast<size_t>(a)], true};
  }
  int32_t size() const { return fcfs_.size; }
  int32_t count(RequestState s) const { return state_[state_index(s)].size; }
  Slot first(RequestState s) const { return state_[state_index(s)].head; }
  Slot last(RequestState s) const { return state_[state_index(s)].tail; }
  Slot next_in_state(Slot s) const { return nodes_[static_cast<size_t>(s)].next_in_state; }
  const QueueNode& node(Slot s) const { return nodes_[static_cast<size_t>(s)]; }
  // Whether slot `s` holds request `id` (slots are reused after an erase).
  bool holds(Slot s, RequestId id) const {
    return s >= 0 && static_cast<size_t>(s) < nodes_.size() &&
           (nodes_[static_cast<size_t>(s)].flags & kLive) &&
           nodes_[static_cast<size_t>(s)].request.id == id;
  }
  // One past the largest slot in use (for arrays indexed by slot).
  Slot slots() const { return static_cast<Slot>(nodes_.size()); }
  bool frozen() const { return frozen_; }
  // Asks the CPU to fetch slot s's node and links into cache (the engine, ahead of a step).
  void prefetch(Slot s) const {
    const char* n = reinterpret_cast<const char*>(nodes_.data() + s);
    __builtin_prefetch(n);
    __builtin_prefetch(n + sizeof(QueueNode) - 1);
    __builtin_prefetch(links_.data() + s);
  }
  // The same for adapter a's list ends and size.
  void prefetch_adapter(AdapterId a) const {
    __builtin_prefetch(adapter_.data() + a);
    __builtin_prefetch(adapter_size_.data() + a);
  }

  // ---- writing (the engine, the test kit) -------------------------------------------------
  // Adds a request (r.state waiting, ready or swapped) at the back or front of its state's
  // list and at its FCFS place, found from the back (new arrivals: one step). Not while frozen.
  Slot push(const RequestView& r, End end = End::back) {
    Slot s;
    if (!free_.empty()) {
      s = free_.back();
      free_.pop_back();
    } else {
      s = static_cast<Slot>(nodes_.size());
      nodes_.emplace_back();
      links_.emplace_back();
    }
    QueueNode& n = at(s);
    n = QueueNode{};
    links_[static_cast<size_t>(s)] = QueueLinks{};
    n.request = r;
    n.flags = kLive;
    link_state(s, end);
    link_ordered(s, kNone, false, true);
    link_ordered(s, kNone, true, true);
    return s;
  }

  // To the back or front of state `to`'s list (running: out of the state lists).
  void move(Slot s, RequestState to, End end = End::back) {
    QueueNode& n = at(s);
    if (n.request.state != RequestState::running) unlink_state(s);
    n.request.state = to;
    if (to != RequestState::running) link_state(s, end);
    if (frozen_) {
      mark_pending(s);
    } else if (to != RequestState::running) {
      const Slot hint_f = n.prev, hint_a = n.prev_of_adapter;
      unlink_ordered(s);
      link_ordered(s, hint_f, false, false);
      link_ordered(s, hint_a, true, false);
    }
  }

  void erase(Slot s) {
    QueueNode& n = at(s);
    if (n.request.state != RequestState::running) unlink_state(s);
    n.request.state = RequestState::finished;
    if (frozen_) {
      n.flags |= kErased;
      mark_pending(s);
      return;
    }
    unlink_ordered(s);
    release(s);
  }

  // The request's data, to keep it current (generated, kv_blocks). Its id, adapter and
  // arrival never change; its state changes only through move().
  RequestView& request(Slot s) { return at(s).request; }

  void freeze() { frozen_ = true; }
  void thaw() {
    frozen_ = false;
    if (pending_.empty()) return;
    // The erased leave first: taking them out keeps the others in order.
    size_t kept = 0;
    for (Slot s : pending_) {
      if (at(s).flags & kErased) {
        unlink_ordered(s);
        release(s);
      } else {
        pending_[kept++] = s;
      }
    }
    pending_.resize(kept);
    // A moved request keeps its arrival, so it nearly always keeps its place (it moves only
    // among equal arrivals). When each one is in order with its neighbours in both orders,
    // every adjacent pair is (the others' keys did not change): the lists are sorted already.
    bool in_order = true;
    for (Slot s : pending_)
      if (!in_place(s, false) || !in_place(s, true)) {
        in_order = false;
        break;
      }
    if (in_order) {
      for (Slot s : pending_) at(s).flags = static_cast<uint8_t>(at(s).flags & ~kPending);
      pending_.clear();
      return;
    }
    // Places are searched from the nearest request before it that did not move (it and
    // everything the searches pass over are in order).
    hints_.clear();
    for (Slot s : pending_) {
      Slot f = at(s).prev, a = at(s).prev_of_adapter;
      while (f != kNone && (at(f).flags & kPending)) f = at(f).prev;
      while (a != kNone && (at(a).flags & kPending)) a = at(a).prev_of_adapter;
      hints_.push_back({f, a});
    }
    for (Slot s : pending_) unlink_ordered(s);
    for (size_t i = 0; i < pending_.size(); ++i) {
      const Slot s = pending_[i];
      QueueNode& n = at(s);
      n.flags = static_cast<uint8_t>(n.flags & ~kPending);
      link_ordered(s, hints_[i].first, false, false);
      link_ordered(s, hints_[i].second, true, false);
    }
    pending_.clear();
  }

 private:
  struct Ends {
    Slot head = kNone, tail = kNone;
  };
  struct List : Ends {
    int32_t size = 0;
  };
  static constexpr uint8_t kLive = 1, kPending = 2, kErased = 4;

  QueueNode& at(Slot s) { return nodes_[static_cast<size_t>(s)]; }
  const QueueNode& at(Slot s) const { return nodes_[static_cast<size_t>(s)]; }
  static size_t state_index(RequestState s) { return static_cast<size_t>(s); }

  // dLoRA's FCFS: arrival, then waiting < ready < swapped, then the state list's order.
  bool before(Slot x, Slot y) const {
    const QueueNode& a = at(x);
    const QueueNode& b = at(y);
    if (a.request.arrival != b.request.arrival) return a.request.arrival < b.request.arrival;
    if (a.request.state != b.request.state) return a.request.state < b.request.state;
    return a.seq < b.seq;
  }

  // Whether s is in order with its neighbours in the FCFS order of all (of_adapter false) or
  // of its adapter's requests.
  bool in_place(Slot s, bool of_adapter) const {
    const QueueNode& n = at(s);
    const Slot p = of_adapter ? n.prev_of_adapter : n.prev;
    const Slot q = next_link(s, of_adapter);
    return (p == kNone || before(p, s)) && (q == kNone || before(s, q));
  }

  void link_state(Slot s, End end) {
    QueueNode& n = at(s);
    List& l = state_[state_index(n.request.state)];
    if (end == End::back) {
      n.seq = ++back_seq_;
      n.prev_in_state = l.tail;
      n.next_in_state = kNone;
      if (l.tail != kNone) at(l.tail).next_in_state = s;
      l.tail = s;
      if (l.head == kNone) l.head = s;
    } else {
      n.seq = --front_seq_;
      n.next_in_state = l.head;
      n.prev_in_state = kNone;
      if (l.head != kNone) at(l.head).prev_in_state = s;
      l.head = s;
      if (l.tail == kNone) l.tail = s;
    }
    ++l.size;
  }
  void unlink_state(Slot s) {
    QueueNode& n = at(s);
    List& l = state_[state_index(n.request.state)];
    (n.prev_in_state != kNone ? at(n.prev_in_state).next_in_state : l.head) = n.next_in_state;
    (n.next_in_state != kNone ? at(n.next_in_state).prev_in_state : l.tail) = n.prev_in_state;
    n.next_in_state = n.prev_in_state = kNone;
    --l.size;
  }

  // The FCFS list of all requests (of_adapter false) or of the node's adapter (true).
  Ends& ordered_list(Slot s, bool of_adapter) {
    return of_adapter ? adapter_[static_cast<size_t>(at(s).request.adapter)] : fcfs_;
  }
  int32_t& ordered_size(Slot s, bool of_adapter) {
    return of_adapter ? adapter_size_[static_cast<size_t>(at(s).request.adapter)] : fcfs_.size;
  }
  int32_t& next_link(Slot s, bool of_adapter) {
    QueueLinks& k = links_[static_cast<size_t>(s)];
    return of_adapter ? k.next_of_adapter : k.next;
  }
  int32_t next_link(Slot s, bool of_adapter) const {
    const QueueLinks& k = links_[static_cast<size_t>(s)];
    return of_adapter ? k.next_of_adapter : k.next;
  }
  static int32_t& prev_link(QueueNode& n, bool of_adapter) {
    return of_adapter ? n.prev_of_adapter : n.prev;
  }
  // Links s at its place, searching from `hint` (a linked node near it), or from the back
  // (from_back) or the front (hint kNone) of the list.
  void link_ordered(Slot s, Slot hint, bool of_adapter, bool from_back) {
    Ends& l = ordered_list(s, of_adapter);
    Slot p;  // s goes after p (kNone: first)
    if (from_back) {
      p = l.tail;
      while (p != kNone && before(s, p)) p = prev_link(at(p), of_adapter);
    } else if (hint != kNone && before(s, hint)) {
      p = prev_link(at(hint), of_adapter);
      while (p != kNone && before(s, p)) p = prev_link(at(p), of_adapter);
    } else {
      p = hint;
      for (;;) {
        const Slot q = p == kNone ? l.head : next_link(p, of_adapter);
        if (q == kNone || before(s, q)) break;
        p = q;
      }
    }
    QueueNode& n = at(s);
    const Slot q = p == kNone ? l.head : next_link(p, of_adapter);
    prev_link(n, of_adapter) = p;
    next_link(s, of_adapter) = q;
    (p != kNone ? next_link(p, of_adapter) : l.head) = s;
    (q != kNone ? prev_link(at(q), of_adapter) : l.tail) = s;
    ++ordered_size(s, of_adapter);
  }
  void unlink_ordered(Slot s) {
    for (bool of_adapter : {false, true}) {
      Ends& l = ordered_list(s, of_adapter);
      QueueNode& n = at(s);
      const Slot p = prev_link(n, of_adapter), q = next_link(s, of_adapter);
      (p != kNone ? next_link(p, of_adapter) : l.head) = q;
      (q != kNone ? prev_link(at(q), of_adapter) : l.tail) = p;
      prev_link(n, of_adapter) = next_link(s, of_adapter) = kNone;
      --ordered_size(s, of_adapter);
    }
  }
  void mark_pending(Slot s) {
    QueueNode& n = at(s);
    if (n.flags & kPending) return;
    n.flags |= kPending;
    pending_.push_back(s);
  }
  void release(Slot s) {
    at(s).flags = 0;
    free_.push_back(s);
  }

  std::vector<QueueNode> nodes_;
  std::vector<QueueLinks> links_;  // by slot, beside nodes_
  std::vector<Slot> free_;
  List fcfs_;
  // Per adapter: the ends of its FCFS list, and apart from them its size, which policies read
  // for many adapters per decision (a few cache lines for all of them).
  std::vector<Ends> adapter_;
  std::vector<int32_t> adapter_size_;
  List state_[3];  // waiting, ready, swapped
  int64_t back_seq_ = 0, front_seq_ = 0;
  bool frozen_ = false;
  std::vector<Slot> pending_;  // moved or erased while frozen, in that order
  std::vector<std::pair<Slot, Slot>> hints_;
};

}  // namespace lorasched::api
