// Asking the CPU to fetch memory ahead of its use (the simulation's warm-up of the replicas
// due next: docs/performance.md, "Simulation speed and cluster scale"). A hint: it changes
// nothing and cannot fault.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lorasched {

inline constexpr size_t kCacheLine = 64;

// Calls f(line address) for every cache line of [p, p + bytes), bytes > 0, wherever p starts
// in its line: an object that does not start on a line boundary spans one line more than
// bytes / 64, and stepping 64 bytes from p would miss that last line.
template <class F>
inline void for_each_line(const void* p, size_t bytes, F&& f) {
  const auto first = reinterpret_cast<uintptr_t>(p) & ~(uintptr_t{kCacheLine} - 1);
  const auto end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t a = first; a < end; a += kCacheLine) f(a);
}

// Every cache line of [p, p + bytes).
inline void prefetch_bytes(const void* p, size_t bytes) {
  for_each_line(p, bytes,
                [](uintptr_t a) { __builtin_prefetch(reinterpret_cast<const void*>(a)); });
}

}  // namespace lorasched
