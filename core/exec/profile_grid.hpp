// The grid of points `lorasched profile` measures (docs/costmodel.md, "Profiles").
#pragma once

#include <cstdint>
#include <vector>

#include "core/exec/profile.hpp"

namespace lorasched {

// The default grid for a model shape (--quick: a small one for tests, seconds).
ProfileGrid default_profile_grid(const ModelShape& shape, bool quick, std::vector<int32_t> ranks);
// Adapters of each rank the grid needs (the rotation, at least the most distinct adapters
// in a batch, plus one to load).
int32_t profile_adapters_per_rank(const ProfileGrid& grid);

}  // namespace lorasched
