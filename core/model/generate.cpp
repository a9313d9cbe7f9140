#include "core/model/generate.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <fstream>
#include <limits>

#include "core/common/error.hpp"

namespace lorasched {

namespace {

constexpr int kBlock = 16;

// Decodes one batch of requests (indices into `requests`) together on `model`.
void decode_batch(LlamaModel& model, std::span<const GenerateRequest> requests,
                  const std::vector<size_t>& which, int max_new_tokens, bool keep_logits,
                  std::span<const int32_t> eos, GenerateResult& out) {
  const int V = model.shape().vocab_size;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<int32_t>> blocks;
  int32_t next_block = 0;
  for (size_t i : which) {
    tokens.push_back(requests[i].prompt);
    const int need =
        static_cast<int>((requests[i].prompt.size() + max_new_tokens + kBlock - 1) / kBlock);
    std::vector<int32_t> b;
    for (int k = 0; k < need; ++k) b.push_back(next_block++);
    blocks.push_back(std::move(b));
  }
  std::vector<float> logits;
  std::vector<size_t> running(which.size());  // positions in `which` still generating
  for (size_t j = 0; j < running.size(); ++j) running[j] = j;
  for (int step = 0; step < max_new_tokens && !running.empty(); ++step) {
    std::vector<ForwardEntry> entries;
    for (size_t j : running) {
      const auto& t = tokens[j];
      const int start = step == 0 ? 0 : static_cast<int>(t.size()) - 1;
      entries.push_back({requests[which[j]].adapter,
                         std::span<const int32_t>(t).subspan(static_cast<size_t>(start)), start,
                         blocks[j]});
    }
    model.forward(entries, logits);
    std::vector<size_t> still;
    for (size_t e = 0; e < running.size(); ++e) {
      const size_t j = running[e];
      const float* row = logits.data() + e * static_cast<size_t>(V);
      const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
      tokens[j].push_back(next);
      out.tokens[which[j]].push_back(next);
      if (keep_logits) out.logits[which[j]].emplace_back(row, row + V);
      if (std::find(eos.begin(), eos.end(), next) == eos.end()) still.push_back(j);
    }
    running = std::move(still);
  }
}

}  // namespace

GenerateResult greedy_generate(const ModelWeights& weights,
                               std::span<const GenerateRequest> requests, int max_new_tokens,
                               bool merged, bool keep_logits,
                               std::span<const int32_t> eos_token_ids) {
  GenerateResult out;
  out.tokens.resize(requests.size());
  if (keep_logits) out.logits.resize(requests.size());
  if (requests.empty() || max_new_tokens <= 0) return out;
  int64_t blocks = 0;
  for (const auto& r : requests) {
    if (r.prompt.empty()) throw InputError("generate: a prompt has no token ids");
    for (int32_t t : r.prompt)
      if (t < 0 || t >= weights.shape.vocab_size)
        throw InputError(fmt::format("generate: token id {} is outside the vocabulary (0..{})", t,
                                     weights.shape.vocab_size - 1));
    blocks += (static_cast<int64_t>(r.prompt.size()) + max_new_tokens + kBlock - 1) / kBlock;
  }
  LlamaModel model(weights, blocks, kBlock);
  if (!merged) {
    std::vector<size_t> all(requests.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    decode_batch(model, requests, all, max_new_tokens, keep_logits, eos_token_ids, out);
    return out;
  }
  std::vector<const LoraAdapterWeights*> groups;
  for (const auto& r : requests)
    if (std::find(groups.begin(), groups.end(), r.adapter) == groups.end())
      groups.push_back(r.adapter);
  for (const LoraAdapterWeights* a : groups) {
    std::vector<size_t> which;
    for (size_t i = 0; i < requests.size(); ++i)
      if (requests[i].adapter == a) which.push_back(i);
    if (a) model.merge(*a);
    decode_batch(model, requests, which, max_new_tokens, keep_logits, eos_token_ids, out);
    if (a) model.unmerge();
  }
  return out;
}

void write_logits_npy(const std::filesystem::path& path, const GenerateResult& result) {
  const size_t n = result.logits.size();
  size_t steps = 0, vocab = 0;
  for (const auto& req : result.logits) {
    steps = std::max(steps, req.size());
    if (!req.empty()) vocab = req[0].size();
  }
  std::string header = fmt::format(
      "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}), }}", n, steps, vocab);
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  const std::filesystem::path tmp = path.string() + ".partial";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw InputError(fmt::format("{}: cannot write logits", path.string()));
    f.write("\x93NUMPY\x01\x00", 8);
    const uint16_t len = static_cast<uint16_t>(header.size());
    f.put(static_cast<char>(len & 0xff));
    f.put(static_cast<char>(len >> 8));
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    const std::vector<float> past_end(vocab, std::numeric_limits<float>::quiet_NaN());
    for (const auto& req : result.logits)
      for (size_t s = 0; s < steps; ++s) {
        const std::vector<float>& row = s < req.size() ? req[s] : past_end;
        f.write(reinterpret_cast<const char*>(row.data()),
                static_cast<std::streamsize>(row.size() * sizeof(float)));
      }
    if (!f) throw Error(ExitCode::runtime, fmt::format("{}: write failed", path.string()));
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace lorasched
