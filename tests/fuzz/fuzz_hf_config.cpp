// Fuzz target: a Hugging Face model's config.json (core/checkpoint/hf_model). The bytes are
// the config.json of a folder that also holds a tiny valid model.safetensors; the folder is
// loaded with load_hf_model (and its config alone with read_hf_config). A config describing
// another shape must be refused (tensor shapes), never crash or allocate without bound.
#include <cmath>

#include "core/checkpoint/hf_model.hpp"
#include "fuzz/fuzz_util.hpp"
#include "fuzz/tiny_checkpoint.hpp"

namespace {
const std::filesystem::path& model_dir() {
  static const std::filesystem::path dir = [] {
    auto d = lorasched::fuzz::scratch_dir() / "model";
    std::filesystem::create_directories(d);
    lorasched::checkpoint::write_safetensors(
        d / "model.safetensors", lorasched::fuzz::model_tensors(lorasched::fuzz::tiny_shape()));
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lorasched;
  const auto& dir = model_dir();
  fuzz::write_file(dir / "config.json", fuzz::as_text(data, size));
  fuzz::run_one("fuzz_hf_config", [&] {
    const ModelShape s = read_hf_config(dir / "config.json");
    if (s.hidden_size < 1 || s.num_layers < 1 || s.num_heads < 1 || s.num_kv_heads < 1 ||
        s.head_dim * s.num_heads != s.hidden_size || !(s.rms_norm_eps > 0) ||
        !std::isfinite(s.rms_norm_eps) || !(s.rope_theta > 0) || !std::isfinite(s.rope_theta))
      fuzz::finding("fuzz_hf_config", "read_hf_config accepted an invalid shape");
    const ModelWeights w = load_hf_model(dir);
    if (w.layers.size() != static_cast<size_t>(w.shape.num_layers))
      fuzz::finding("fuzz_hf_config", "layer count");
  });
  return 0;
}
