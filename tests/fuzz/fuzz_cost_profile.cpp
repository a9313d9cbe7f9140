// Fuzz target: cost profiles (core/exec/profile, JSON written by `lorasched profile`). The bytes
// are written to a *.json file and given to make_cost_model for the tiny model. A profile that
// loads must predict a finite, non-negative time for every batch, switch, load and swap a run
// can ask for: a NaN or infinite prediction would be a silent wrong result.
#include <cmath>
#include <string>

#include "core/adapters/adapter.hpp"
#include "core/exec/costmodel_factory.hpp"
#include "core/model/presets.hpp"
#include "fuzz/fuzz_util.hpp"

namespace {

void check(const char* what, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    lorasched::fuzz::finding("fuzz_cost_profile", std::string("profile loaded, but predicts ") +
                                                      std::to_string(seconds) + " s for " + what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lorasched;
  const auto file = fuzz::scratch_dir() / "profile.json";
  fuzz::write_file(file, fuzz::as_text(data, size));
  static const ModelShape shape = model_preset("tiny");
  fuzz::run_one("fuzz_cost_profile", [&] {
    const auto model = make_cost_model(file.string(), shape);
    if (!(model->device_memory_bytes() > 0) || !std::isfinite(model->device_memory_bytes()) ||
        !(model->default_pool_bytes() >= 0) || !std::isfinite(model->default_pool_bytes()))
      fuzz::finding("fuzz_cost_profile", "bad device memory or default pool");
    // Batches from one token to beyond any measured point, all modes, with LoRA terms.
    for (const int64_t tokens : {int64_t{1}, int64_t{7}, int64_t{300}, int64_t{1} << 20}) {
      for (const int32_t decode : {0, 1, 64, 4096}) {
        BatchFeatures f;
        f.mode = decode % 2 ? api::Mode::merged : api::Mode::unmerged;
        f.prefill_tokens = tokens;
        f.prefill_sq_tokens = tokens * tokens;
        f.decode_seqs = decode;
        f.decode_context = static_cast<int64_t>(decode) * 1000;
        f.entries = decode + 3;
        f.distinct_adapters = 1 + decode % 5;
        f.lora_tokens = f.mode == api::Mode::unmerged ? tokens + decode : 0;
        f.lora_passes = f.lora_tokens > 0 ? 1 : 0;
        f.lora_segments = f.lora_passes * f.distinct_adapters;
        f.lora_token_rank = f.lora_tokens * 16;
        f.lora_adapter_rank = 16 * f.distinct_adapters;
        check("an iteration", model->iteration(f));
        BatchFeatures g = f;  // mixed: the other adapters' rows in two passes
        g.mode = api::Mode::mixed;
        g.lora_tokens = tokens;
        g.lora_passes = 2;
        g.lora_segments = 2 * g.distinct_adapters;
        g.lora_token_rank = tokens * 32;
        check("a mixed iteration", model->iteration(g));
      }
    }
    for (const int rank : {1, 8, 64, 4096}) {
      AdapterInfo a{0, "a", rank, lora_parameters(shape, rank), 0};
      a.bytes = a.num_parameters * model->bytes_per_element();
      AdapterInfo b = a;
      b.id = 1;
      for (const SwitchMethod m : {SwitchMethod::fused, SwitchMethod::unmerge_merge}) {
        for (const auto& s : model->switch_steps(&a, &b, m)) check("a switch", s.seconds);
        for (const auto& s : model->switch_steps(nullptr, &a, m)) check("a merge", s.seconds);
        for (const auto& s : model->switch_steps(&a, nullptr, m)) check("an unmerge", s.seconds);
      }
      check("a load", model->load(a.bytes));
    }
    for (const int64_t bytes : {int64_t{0}, int64_t{1}, int64_t{1} << 20, int64_t{1} << 40}) {
      check("a swap out", model->swap(bytes, false));
      check("a swap in", model->swap(bytes, true));
    }
  });
  return 0;
}
