// The workload's checks of its settings, shared by the generators (workload.cpp, artifact.cpp):
// bad input is an InputError "workload: ..." (exit 2).
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/common/error.hpp"

namespace lorasched::workload_detail {

[[noreturn]] inline void bad(const std::string& msg) { throw InputError("workload: " + msg); }

inline void require_positive(double v, std::string_view name) {
  if (!std::isfinite(v) || v <= 0)
    bad(fmt::format("{} must be a finite number > 0 (got {})", name, v));
}

inline void require_non_negative(double v, std::string_view name) {
  if (!std::isfinite(v) || v < 0)
    bad(fmt::format("{} must be a finite number >= 0 (got {})", name, v));
}

}  // namespace lorasched::workload_detail
