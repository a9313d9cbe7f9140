// RecordVector (core/metrics/record_vector.hpp) against std::vector as the reference: the same
// operations on both must leave the same rows, through growth by realloc well past the sizes
// glibc serves with mremap (more than 32 MB).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/metrics/records.hpp"

namespace lorasched {
namespace {

IterationRecord row(int64_t i) {
  IterationRecord r;
  r.replica = static_cast<int32_t>(i % 7);
  r.iteration = i;
  r.start = 0.5 * static_cast<double>(i);
  r.kv_blocks_used = i * 3;
  return r;
}

void expect_same(const RecordVector<IterationRecord>& got,
                 const std::vector<IterationRecord>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].iteration, want[i].iteration) << "row " << i;
    ASSERT_EQ(got[i].replica, want[i].replica) << "row " << i;
    ASSERT_EQ(got[i].start, want[i].start) << "row " << i;
    ASSERT_EQ(got[i].kv_blocks_used, want[i].kv_blocks_used) << "row " << i;
  }
}

TEST(RecordVector, GrowsPastTheMremapSizeKeepingEveryRow) {
  // 600,000 rows of 112 bytes: 67 MB, so the last reallocations are mremap'd blocks.
  RecordVector<IterationRecord> v;
  std::vector<IterationRecord> ref;
  for (int64_t i = 0; i < 600'000; ++i) {
    v.push_back(row(i));
    ref.push_back(row(i));
  }
  expect_same(v, ref);
  EXPECT_GE(v.capacity(), v.size());
  EXPECT_EQ(v.back().iteration, 599'999);
  EXPECT_EQ(v.front().iteration, 0);
}

TEST(RecordVector, PushingOneOfItsOwnRowsWhileGrowingCopiesTheRow) {
  RecordVector<IterationRecord> v;
  std::vector<IterationRecord> ref;
  v.push_back(row(41));
  ref.push_back(row(41));
  for (int i = 0; i < 100; ++i) {  // every push that reallocates reads a row that moves
    v.push_back(v[0]);
    ref.push_back(ref[0]);
  }
  expect_same(v, ref);
}

TEST(RecordVector, CopyMoveAssignResizeAndPopActLikeAVector) {
  RecordVector<IterationRecord> v{row(1), row(2), row(3)};
  std::vector<IterationRecord> ref{row(1), row(2), row(3)};
  RecordVector<IterationRecord> copy = v;
  v.pop_back();
  ref.pop_back();
  expect_same(v, ref);
  expect_same(copy, {row(1), row(2), row(3)});  // the copy is its own storage

  RecordVector<IterationRecord> moved = std::move(copy);
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  expect_same(moved, {row(1), row(2), row(3)});

  moved.resize(5);  // new rows take the record's defaults, as a vector's would
  std::vector<IterationRecord> grown{row(1), row(2), row(3)};
  grown.resize(5);
  expect_same(moved, grown);
  EXPECT_TRUE(std::isnan(moved[4].merged_duration));  // its default is kNoTime
  EXPECT_EQ(moved[4].merged_adapter, -1);

  moved = {row(9)};
  expect_same(moved, {row(9)});
  moved.clear();
  EXPECT_TRUE(moved.empty());
  moved.reserve(1000);
  EXPECT_GE(moved.capacity(), 1000u);
  EXPECT_TRUE(moved.empty());
}

}  // namespace
}  // namespace lorasched
