// Fuzz target: a PEFT adapter's adapter_config.json (core/checkpoint/peft_adapter). The bytes
// are the adapter_config.json of a folder that also holds a valid rank-2 adapter on every
// projection of a tiny model; the folder is loaded for that model with load_peft_adapter.
#include <cmath>

#include "core/checkpoint/peft_adapter.hpp"
#include "fuzz/fuzz_util.hpp"
#include "fuzz/tiny_checkpoint.hpp"

namespace {
const std::filesystem::path& adapter_dir() {
  static const std::filesystem::path dir = [] {
    auto d = lorasched::fuzz::scratch_dir() / "adapter";
    std::filesystem::create_directories(d);
    lorasched::checkpoint::write_safetensors(
        d / "adapter_model.safetensors",
        lorasched::fuzz::adapter_tensors(lorasched::fuzz::tiny_shape(), 2));
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lorasched;
  const auto& dir = adapter_dir();
  fuzz::write_file(dir / "adapter_config.json", fuzz::as_text(data, size));
  fuzz::run_one("fuzz_adapter_config", [&] {
    const ModelShape shape = fuzz::tiny_shape();
    const LoraAdapterWeights a = load_peft_adapter(dir, shape);
    for (const auto& layer : a.layers)
      for (const auto& m : layer)
        if (m.rank > 0 && !std::isfinite(m.scale))
          fuzz::finding("fuzz_adapter_config", "adapter loaded with a non-finite scale");
  });
  return 0;
}
