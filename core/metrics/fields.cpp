#include "core/metrics/fields.hpp"

#include <fmt/format.h>

namespace lorasched {

std::span<const char* const> enum_names(FieldEnum e) {
  switch (e) {
    case FieldEnum::status:
      return kRequestStatusNames;
    case FieldEnum::mode:
      return kIterationModeNames;
    case FieldEnum::kind:
      return kEventKindNames;
    case FieldEnum::none:
      break;
  }
  return {};
}

const char* enum_type_name(FieldEnum e) {
  switch (e) {
    case FieldEnum::status:
      return "status";
    case FieldEnum::mode:
      return "mode";
    case FieldEnum::kind:
      return "kind";
    case FieldEnum::none:
      break;
  }
  return "";
}

std::string field_type_name(const FieldInfo& f) {
  const char* scalar = "";
  switch (f.type) {
    case FieldType::i8:
      scalar = "int8";
      break;
    case FieldType::i32:
      scalar = "int32";
      break;
    case FieldType::i64:
      scalar = "int64";
      break;
    case FieldType::u64:
      scalar = "uint64";
      break;
    case FieldType::f64:
      scalar = "float64";
      break;
  }
  if (f.enumeration == FieldEnum::none) return scalar;
  return fmt::format("enum {} `{}`", scalar, enum_type_name(f.enumeration));
}

}  // namespace lorasched
