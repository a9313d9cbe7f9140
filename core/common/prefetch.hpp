// Asking the CPU to fetch memory ahead of its use (the simulation's warm-up of the replicas
// due next: docs/performance.md, "Simulation speed and cluster scale"). A hint: it changes
// nothing and cannot fault.
#pragma once

#include <cstddef>

namespace lorasched {

inline constexpr size_t kCacheLine = 64;

// Every cache line of [p, p + bytes).
inline void prefetch_bytes(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t b = 0; b < bytes; b += kCacheLine) __builtin_prefetch(c + b);
}

}  // namespace lorasched
