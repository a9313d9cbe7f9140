// Reader and writer of the safetensors format (https://github.com/huggingface/safetensors):
//
//   [8 bytes: N, little-endian u64] [N bytes: JSON header] [data buffer]
//
// The header is a JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}; offsets are relative to the start of the data buffer.
//
// SafetensorsFile memory-maps the file (read-only) and validates the whole header on open:
// every malformed header, range or dtype is an InputError whose one-line message names the
// file and, where there is one, the tensor. Reading converts F32, F16 and BF16 to fp32
// (exactly, subnormals, infinities and NaNs included); other dtypes are listed but cannot be
// read as floats. Gaps between tensors in the data buffer are tolerated (the reference reader
// rejects them); overlaps are not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lorasched/kernels/half.hpp"

namespace lorasched::checkpoint {

enum class Dtype : uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  C64,
  I64,
  U64,
  F4,
  F6_E2M3,
  F6_E3M2
};

std::string_view dtype_name(Dtype d);
// Bits of one element (4 for F4, 6 for F6_*, else a multiple of 8).
int dtype_bits(Dtype d);
// Parses a safetensors dtype string; false when it is not one.
bool parse_dtype(std::string_view s, Dtype& out);

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data buffer, [begin, end)
  uint64_t end = 0;
  uint64_t numel() const;  // product of shape (validated not to overflow on open)
};

// "[2, 3]" — for messages.
std::string format_shape(std::span<const int64_t> shape);
// The name quoted for a one-line message: control characters and quotes escaped.
std::string quote_name(std::string_view name);

// Conversions of one element (lorasched/kernels/half.hpp: exact to fp32; to fp16/bf16 round
// to nearest even, overflow to infinity, keep NaNs NaN).
using kernels::bf16_to_f32;
using kernels::f16_to_f32;
using kernels::f32_to_bf16;
using kernels::f32_to_f16;

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws InputError naming the file (and tensor) on any defect.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  // Tensors in order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor converted to fp32. Errors (InputError, naming file and tensor): no such tensor,
  // a dtype other than F32/F16/BF16, a shape other than `expected_shape`.
  std::vector<float> read_f32(std::string_view name, std::span<const int64_t> expected_shape) const;
  std::vector<float> read_f32(std::string_view name,
                              std::initializer_list<int64_t> expected_shape) const {
    return read_f32(name, std::span<const int64_t>(expected_shape.begin(), expected_shape.size()));
  }
  // The tensor converted to fp32 whatever its shape.
  std::vector<float> read_f32(const TensorInfo& info) const;
  // Raw bytes of a tensor (any dtype).
  std::span<const std::byte> bytes(const TensorInfo& info) const;

 private:
  struct Mapping;
  SafetensorsFile() = default;

  std::filesystem::path path_;
  std::unique_ptr<Mapping> map_;
  const std::byte* data_ = nullptr;  // start of the data buffer
  uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// Throws InputError "FILE: tensor 'NAME': element I of N is nan (...)" when `values` hold a NaN
// or an infinity. The model and adapter loaders call it on every weight they read: one such
// value silently turns every token computed through it into NaN (docs/hardening.md).
void require_finite(std::span<const float> values, const std::filesystem::path& path,
                    std::string_view tensor);

// A tensor to write: fp32 values stored as `dtype` (F32, F16 or BF16).
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
  Dtype dtype = Dtype::F32;
};

// The bytes of a safetensors file holding `tensors` in the given order (header padded with
// spaces to a multiple of 8, like the reference writer). Throws InputError on a bad tensor
// (values/shape mismatch, unsupported dtype, duplicate name).
std::string encode_safetensors(const std::vector<TensorToWrite>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lorasched::checkpoint
