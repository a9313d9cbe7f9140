// For cachegrind only: makes every __builtin_prefetch a load, so that cachegrind (which
// ignores prefetch instructions) counts the lines a warm-up fetches at the warm-up, and at
// their use only the lines no prefetch covered. The loaded byte goes to a volatile sink:
// valgrind drops loads whose value is unused. Build with
//   -DCMAKE_CXX_FLAGS="-g -include <repo>/bench/cachegrind_touch.h"
// (docs/performance.md, "Where the time goes"). Never for timing: loads wait, prefetches don't.
#pragma once
inline volatile char lorasched_cachegrind_sink;
#define __builtin_prefetch(p, ...) ((void)(lorasched_cachegrind_sink = *(const volatile char*)(p)))
