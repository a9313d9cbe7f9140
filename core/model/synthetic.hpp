// Seeded synthetic weights for a model shape, for experiments without a checkpoint.
#pragma once

#include <cstdint>

#include "core/model/weights.hpp"

namespace lorasched {

// Projections ~ N(0, 1/in), embeddings ~ N(0, 1), norms ~ 1 + N(0, 0.1^2): a model whose
// logits are well spread, so greedy tokens are stable under fp32 rounding differences.
ModelWeights synthetic_model(const ModelShape& shape, uint64_t seed);

}  // namespace lorasched
