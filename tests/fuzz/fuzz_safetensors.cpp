// Fuzz target: safetensors files (core/checkpoint/safetensors). The bytes are written to a
// file, opened (mmap + header validation) and every tensor is read: as fp32 when its dtype
// is F32/F16/BF16 (with and without the expected-shape check), as raw bytes otherwise.
#include <cstring>
#include <string>

#include "core/checkpoint/safetensors.hpp"
#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lorasched;
  using checkpoint::Dtype;
  const auto file = fuzz::scratch_dir() / "model.safetensors";
  fuzz::write_file(file, fuzz::as_text(data, size));
  fuzz::run_one("fuzz_safetensors", [&] {
    const auto f = checkpoint::SafetensorsFile::open(file);
    uint64_t prev_end = 0;
    for (const auto& t : f.tensors()) {
      if (f.find(t.name) != &t) fuzz::finding("fuzz_safetensors", "find() misses " + t.name);
      const auto raw = f.bytes(t);
      if (raw.size() != t.end - t.begin) fuzz::finding("fuzz_safetensors", "bytes() size");
      volatile unsigned sum = 0;  // touch every byte (ASan checks the mapping's bounds)
      for (std::byte b : raw) sum = sum + static_cast<unsigned>(b);
      if (t.begin != t.end && t.begin < prev_end)
        fuzz::finding("fuzz_safetensors", "overlapping tensors accepted: " + t.name);
      if (t.end > prev_end) prev_end = t.end;
      if (t.dtype == Dtype::F32 || t.dtype == Dtype::F16 || t.dtype == Dtype::BF16) {
        const auto v = f.read_f32(t);
        if (v.size() != t.numel()) fuzz::finding("fuzz_safetensors", "read_f32 size");
        (void)f.read_f32(t.name, t.shape);
      } else {
        try {
          (void)f.read_f32(t);
          fuzz::finding("fuzz_safetensors", "read_f32 accepted a non-float dtype");
        } catch (const InputError&) {
        }
      }
    }
  });
  return 0;
}
