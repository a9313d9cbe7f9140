// Internal to the workload module: dLoRA's artifact-style workload generator
// (docs/workloads.md, "artifact").
#pragma once

#include <cstdint>
#include <vector>

#include "core/workload/workload.hpp"

namespace lorasched::workload_detail {

// Throws InputError for an invalid ArtifactSpec.
void validate_artifact(const ArtifactSpec& spec);

// Arrival times and adapters (lengths left 0) of the artifact generator, sorted by arrival.
std::vector<RequestSpec> artifact_arrivals(const WorkloadSpec& spec, int32_t num_adapters,
                                           uint64_t seed);

// Splits `total` into integer parts proportional to `weights` (largest remainder, ties to
// the lower index); the parts sum to `total`.
std::vector<int64_t> apportion(int64_t total, const std::vector<double>& weights);

// The artifact's split of `total` requests over `parts` intervals (trace.py 181, 191-193):
// total / parts each, one more for each of the first total mod parts.
std::vector<int64_t> even_split(int64_t total, size_t parts);

}  // namespace lorasched::workload_detail
