// The event loop's queue of replicas ready to start an iteration: a binary min-heap on
// (time, replica id) with each replica's position, so that taking the earliest, adding,
// removing and moving one replica cost O(log R) without allocation.
#pragma once

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace lorasched {

class RunQueue {
 public:
  void reset(size_t replicas) {
    heap_.clear();
    pos_.assign(replicas, kAbsent);
    time_.assign(replicas, 0.0);
  }
  bool empty() const { return heap_.empty(); }
  // The earliest (lowest id on ties).
  int32_t top() const { return heap_.front(); }
  double top_time() const { return time_[static_cast<size_t>(heap_.front())]; }
  // The earliest after top() as the queue stands (the earlier of the root's children), or -1.
  int32_t second() const {
    if (heap_.size() < 2) return -1;
    if (heap_.size() == 2 || before(heap_[1], heap_[2])) return heap_[1];
    return heap_[2];
  }
  // The earliest after second() (the other root child or a child of second()'s), or -1.
  int32_t third() const {
    const size_t n = heap_.size();
    if (n < 3) return -1;
    const size_t s = before(heap_[1], heap_[2]) ? 1 : 2;
    int32_t best = heap_[3 - s];
    for (size_t c = 2 * s + 1; c <= 2 * s + 2 && c < n; ++c)
      if (before(heap_[c], best)) best = heap_[c];
    return best;
  }
  bool contains(int32_t r) const { return pos_[static_cast<size_t>(r)] != kAbsent; }
  double time_of(int32_t r) const { return time_[static_cast<size_t>(r)]; }

  // Inserts r at time t, or moves it there.
  void set(int32_t r, double t) {
    const auto ur = static_cast<size_t>(r);
    if (pos_[ur] == kAbsent) {
      time_[ur] = t;
      pos_[ur] = heap_.size();
      heap_.push_back(r);
      up(pos_[ur]);
      return;
    }
    const double old = time_[ur];
    time_[ur] = t;
    if (t < old)
      up(pos_[ur]);
    else
      down(pos_[ur]);
  }
  void erase(int32_t r) {
    const size_t i = pos_[static_cast<size_t>(r)];
    if (i == kAbsent) return;
    pos_[static_cast<size_t>(r)] = kAbsent;
    const int32_t last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    heap_[i] = last;
    pos_[static_cast<size_t>(last)] = i;
    up(i);
    down(pos_[static_cast<size_t>(last)]);
  }

 private:
  static constexpr size_t kAbsent = std::numeric_limits<size_t>::max();
  bool before(int32_t a, int32_t b) const {
    const double ta = time_[static_cast<size_t>(a)], tb = time_[static_cast<size_t>(b)];
    return ta < tb || (ta == tb && a < b);
  }
  void place(size_t i, int32_t r) {
    heap_[i] = r;
    pos_[static_cast<size_t>(r)] = i;
  }
  void up(size_t i) {
    const int32_t r = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (!before(r, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, r);
  }
  void down(size_t i) {
    const int32_t r = heap_[i];
    const size_t n = heap_.size();
    while (true) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], r)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, r);
  }

  std::vector<int32_t> heap_;
  std::vector<size_t> pos_;
  std::vector<double> time_;
};

}  // namespace lorasched
