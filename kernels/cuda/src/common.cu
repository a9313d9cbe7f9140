#include <stdexcept>
#include <string>

#include "lorasched/kernels/cuda/common.hpp"
#include "lorasched/kernels/half.hpp"

namespace lorasched::kernels::cuda {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  throw std::invalid_argument("dtype_size: unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
  }
  return "unknown";
}

// The host conversions are the shared ones (lorasched/kernels/half.hpp); they agree with the
// device's __float2half_rn / __float2bfloat16_rn on every input but NaN payloads.
uint16_t float_to_bits16(DType dtype, float value) {
  if (dtype == DType::kF16) return f32_to_f16(value);
  if (dtype == DType::kBF16) return f32_to_bf16(value);
  throw std::invalid_argument("float_to_bits16: dtype must be f16 or bf16");
}

float bits16_to_float(DType dtype, uint16_t bits) {
  if (dtype == DType::kF16) return f16_to_f32(bits);
  if (dtype == DType::kBF16) return bf16_to_f32(bits);
  throw std::invalid_argument("bits16_to_float: dtype must be f16 or bf16");
}

float round_to(DType dtype, float value) {
  if (dtype == DType::kF32) return value;
  return bits16_to_float(dtype, float_to_bits16(dtype, value));
}

namespace detail {
void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " +
                           cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}
}  // namespace detail

bool cuda_device_available(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // do not leave the error for the next call to report
    if (why != nullptr) {
      *why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + ": " +
             cudaGetErrorString(err);
    }
    return false;
  }
  if (count == 0) {
    if (why != nullptr) *why = "the CUDA runtime reports no device";
    return false;
  }
  if (why != nullptr) why->clear();
  return true;
}

}  // namespace lorasched::kernels::cuda
