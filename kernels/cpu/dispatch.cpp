#include "internal.hpp"

#include <atomic>

#include "lorasched/kernels/cpu.hpp"

namespace lorasched::kernels::cpu {
namespace {

std::atomic<bool> g_simd_enabled{true};

bool cpu_has_avx2() {
#if LORASCHED_X86_DISPATCH
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

}  // namespace

void set_cpu_simd(bool enabled) { g_simd_enabled.store(enabled, std::memory_order_relaxed); }

bool cpu_simd() { return g_simd_enabled.load(std::memory_order_relaxed) && cpu_has_avx2(); }

namespace detail {
bool use_avx2() { return cpu_simd(); }
}  // namespace detail

}  // namespace lorasched::kernels::cpu
