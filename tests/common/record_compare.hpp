// Field-by-field comparison of records and summaries for tests, driven by the field tables of
// core/metrics/records.hpp (a new field is compared without editing a test). Doubles are
// compared bit for bit (NaN == NaN); a failure names the dataset, field and row.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/metrics/fields.hpp"
#include "core/metrics/records.hpp"

namespace lorasched::test {

// Which fields to compare: all of them, or only the deterministic ones (wall-clock
// measurements such as iterations.decision_wall_us may differ between two runs).
enum class Fields { all, deterministic };

template <class T>
bool same_value(T a, T b) {
  if constexpr (std::is_same_v<T, double>)
    return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b) || (a != a && b != b);
  else
    return a == b;
}

template <class Record>
void expect_same_rows(const RecordVector<Record>& a, const RecordVector<Record>& b,
                      Fields which) {
  const char* dataset = RecordTable<Record>::dataset;
  ASSERT_EQ(a.size(), b.size()) << dataset << ": row counts differ";
  RecordTable<Record>::for_each([&](const FieldInfo& f, auto member) {
    if (which == Fields::deterministic && f.clock == FieldClock::wall) return;
    int reported = 0;
    for (size_t i = 0; i < a.size() && reported < 5; ++i) {
      if (same_value(a[i].*member, b[i].*member)) continue;
      ADD_FAILURE() << dataset << "." << f.name << " differs at row " << i << ": "
                    << +(a[i].*member) << " vs " << +(b[i].*member);
      ++reported;
    }
  });
}

inline void expect_same_records(const RunRecords& a, const RunRecords& b,
                                Fields which = Fields::deterministic) {
  expect_same_rows(a.requests, b.requests, which);
  expect_same_rows(a.iterations, b.iterations, which);
  expect_same_rows(a.events, b.events, which);
  expect_same_rows(a.batches, b.batches, which);
}

inline void expect_same_summary(const Summary& a, const Summary& b,
                                Fields which = Fields::deterministic) {
  RecordTable<Summary>::for_each([&](const FieldInfo& f, auto member) {
    if (which == Fields::deterministic && f.clock == FieldClock::wall) return;
    EXPECT_TRUE(same_value(a.*member, b.*member))
        << "summary " << f.name << " differs: " << a.*member << " vs " << b.*member;
  });
}

}  // namespace lorasched::test
