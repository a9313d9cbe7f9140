// The warm-up's line walk (core/common/prefetch.hpp): every cache line an object touches,
// also when it does not start on a line boundary (the lines are worked out by hand here).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/common/prefetch.hpp"

namespace lorasched {
namespace {

std::vector<uintptr_t> lines(uintptr_t p, size_t bytes) {
  std::vector<uintptr_t> out;
  for_each_line(reinterpret_cast<const void*>(p), bytes, [&](uintptr_t a) { out.push_back(a); });
  return out;
}

TEST(Prefetch, AlignedObjectTakesItsOwnLines) {
  EXPECT_EQ(lines(0x1000, 128), (std::vector<uintptr_t>{0x1000, 0x1040}));
  EXPECT_EQ(lines(0x1000, 1), (std::vector<uintptr_t>{0x1000}));
  EXPECT_EQ(lines(0x1000, 64), (std::vector<uintptr_t>{0x1000}));
  EXPECT_EQ(lines(0x1000, 65), (std::vector<uintptr_t>{0x1000, 0x1040}));
}

TEST(Prefetch, UnalignedObjectTakesTheLineItEndsIn) {
  // 128 bytes from 0x1020 end at 0x109f: lines 0x1000, 0x1040 and 0x1080 (stepping 64 bytes
  // from 0x1020 reaches 0x1020 and 0x1060 only, and missed 0x1080).
  EXPECT_EQ(lines(0x1020, 128), (std::vector<uintptr_t>{0x1000, 0x1040, 0x1080}));
  // A 1,152-byte object (18 lines) 16 bytes into a line spans 19.
  EXPECT_EQ(lines(0x2010, 1152).size(), 19u);
  EXPECT_EQ(lines(0x2010, 1152).back(), 0x2000u + 18 * 64);
  // Bytes within one line: that line only.
  EXPECT_EQ(lines(0x1030, 16), (std::vector<uintptr_t>{0x1000}));
  EXPECT_EQ(lines(0x103f, 2), (std::vector<uintptr_t>{0x1000, 0x1040}));
}

}  // namespace
}  // namespace lorasched
