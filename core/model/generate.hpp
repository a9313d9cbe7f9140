// Greedy decoding with the CPU model: the conformance path (`lorasched generate`), where
// our tokens must equal HF transformers + PEFT's for the same weights: those of
// model.generate(input_ids, max_new_tokens=N, do_sample=False), which stops a sequence at its
// first end-of-sequence token (kept in the output) unless told to ignore it.
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

// Greedy decoding of every request for up to max_new_tokens steps; a request stops after it
// produces one of `eos_token_ids` (HF's eos_token_id, an int or a list; empty: never stops
// early). Unmerged: all requests in one mixed batch (each with its own adapter, Punica-style);
// a finished request leaves the batch. Merged: requests grouped by adapter, each group run with
// its adapter merged into the weights, then unmerged.
GenerateResult greedy_generate(const ModelWeights& weights,
                               std::span<const GenerateRequest> requests, int max_new_tokens,
                               bool merged, bool keep_logits,
                               std::span<const int32_t> eos_token_ids = {});

// Writes logits as a float32 .npy array of shape [requests, steps, vocab], steps being the
// longest request's; the rows of a request past its end (it stopped at EOS earlier) are NaN.
void write_logits_npy(const std::filesystem::path& path, const GenerateResult& result);

}  // namespace lorasched
