// The field tables of records.hpp as data: one description per field (name, scalar type,
// enum, unit, clock, offset) and a visitor that hands each field's description with its
// member pointer. Everything that walks the schema (the HDF5 types, the summary attributes,
// the tests' comparisons, the docs check) goes through these, so a field added to a table
// reaches all of them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "core/metrics/records.hpp"

namespace lorasched {

enum class FieldType : int8_t { i8, i32, i64, u64, f64 };

template <class T>
constexpr FieldType field_type_of() {
  if constexpr (std::is_same_v<T, int8_t>) return FieldType::i8;
  if constexpr (std::is_same_v<T, int32_t>) return FieldType::i32;
  if constexpr (std::is_same_v<T, int64_t>) return FieldType::i64;
  if constexpr (std::is_same_v<T, uint64_t>) return FieldType::u64;
  if constexpr (std::is_same_v<T, double>) return FieldType::f64;
  static_assert(std::is_same_v<T, int8_t> || std::is_same_v<T, int32_t> ||
                    std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t> ||
                    std::is_same_v<T, double>,
                "record fields are int8/int32/int64/uint64/double");
  return FieldType::f64;
}

struct FieldInfo {
  const char* name;
  FieldType type;
  FieldEnum enumeration;  // none, or the named values of an int8 field
  const char* unit;       // "" for none
  FieldClock clock;
  size_t offset;  // in the C++ struct
};

// The type as docs/results-format.md writes it: "int64", "float64", "enum int8 `status`".
std::string field_type_name(const FieldInfo& f);

// An enum's value names, indexed by value (values are 0..n-1).
std::span<const char* const> enum_names(FieldEnum e);
const char* enum_type_name(FieldEnum e);  // "status", "mode", "kind"

template <class Record>
struct RecordTable;  // dataset name, fields, for_each

// clang-format off
#define LORASCHED_FIELD_INFO(type, name, init, enumeration, unit, clock)                         \
  FieldInfo{#name, field_type_of<type>(), FieldEnum::enumeration, unit, FieldClock::clock,       \
            offsetof(Record, name)},
#define LORASCHED_FIELD_VISIT(type, name, init, enumeration, unit, clock)                        \
  f(FieldInfo{#name, field_type_of<type>(), FieldEnum::enumeration, unit, FieldClock::clock,     \
              offsetof(Record, name)},                                                           \
    &Record::name);
#define LORASCHED_RECORD_TABLE(R, DATASET, FIELDS)                                               \
  template <>                                                                                    \
  struct RecordTable<R> {                                                                        \
    using Record = R;                                                                            \
    static constexpr const char* dataset = DATASET;                                              \
    static constexpr std::array fields{FIELDS(LORASCHED_FIELD_INFO)};                            \
    /* f(const FieldInfo&, T Record::*member) for each field, in file order */                   \
    template <class F>                                                                           \
    static void for_each(F&& f) {                                                                \
      FIELDS(LORASCHED_FIELD_VISIT)                                                              \
    }                                                                                            \
  };
// clang-format on

LORASCHED_RECORD_TABLE(RequestRecord, "requests", LORASCHED_REQUEST_FIELDS)
LORASCHED_RECORD_TABLE(IterationRecord, "iterations", LORASCHED_ITERATION_FIELDS)
LORASCHED_RECORD_TABLE(EventRecord, "events", LORASCHED_EVENT_FIELDS)
LORASCHED_RECORD_TABLE(BatchLogRecord, "batches", LORASCHED_BATCH_FIELDS)
LORASCHED_RECORD_TABLE(Summary, "summary", LORASCHED_SUMMARY_FIELDS)

#undef LORASCHED_RECORD_TABLE

}  // namespace lorasched
