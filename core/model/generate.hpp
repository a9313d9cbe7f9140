// Greedy decoding with the CPU model: the conformance path (`lorasched generate`), where
// our tokens must equal HF transformers + PEFT's for the same weights.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "core/adapters/adapter.hpp"
#include "core/model/llama.hpp"

namespace lorasched {

struct GenerateRequest {
  std::vector<int32_t> prompt;
  const LoraAdapterWeights* adapter = nullptr;  // nullptr: the base model
};

struct GenerateResult {
  std::vector<std::vector<int32_t>> tokens;             // new tokens per request
  std::vector<std::vector<std::vector<float>>> logits;  // [request][step][vocab] if kept
};

// Greedy decoding of every request for max_new_tokens steps. Unmerged: all requests in
// one mixed batch (each with its own adapter, Punica-style). Merged: requests grouped by
// adapter, each group run with its adapter merged into the weights, then unmerged.
GenerateResult greedy_generate(const ModelWeights& weights,
                               std::span<const GenerateRequest> requests, int max_new_tokens,
                               bool merged, bool keep_logits);

// Writes logits as a float32 .npy array of shape [requests, steps, vocab].
void write_logits_npy(const std::filesystem::path& path, const GenerateResult& result);

}  // namespace lorasched
