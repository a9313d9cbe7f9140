// Seeded synthetic LoRA adapters of given ranks for a model shape.
#pragma once

#include <cstdint>

#include "core/adapters/adapter.hpp"

namespace lorasched {

// An adapter on all seven target modules of every layer, rank `rank`, lora_alpha `alpha`
// (scale alpha/rank, or alpha/sqrt(rank) with rsLoRA). A ~ N(0, 1/in), B ~ N(0, 1/rank)/2,
// so the adapter changes a layer's output by about half its base magnitude at scale 1
// (unlike PEFT's B = 0 initialisation, which would make every adapter the base model).
LoraAdapterWeights synthetic_adapter(const ModelShape& shape, int rank, double alpha,
                                     bool use_rslora, uint64_t seed, std::string name);

}  // namespace lorasched
