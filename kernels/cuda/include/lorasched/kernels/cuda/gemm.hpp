// Base projections with cuBLAS: y[m, n] = x[m, k] W[n, k]^T, row-major like the CPU kernels.
#pragma once

#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>

#include "lorasched/kernels/cuda/common.hpp"

namespace lorasched::kernels::cuda {

// A cuBLAS handle with its own workspace, bound to one device (the current one when
// constructed). Not thread-safe: use one per host thread / stream.
class BlasHandle {
 public:
  explicit BlasHandle(size_t workspace_bytes = size_t{32} << 20);
  ~BlasHandle();
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;

  // Binds the handle (and re-binds the workspace, which cublasSetStream resets) to stream.
  void set_stream(cudaStream_t stream);
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer<unsigned char> workspace_;
  cudaStream_t stream_ = nullptr;
};

// Throws std::runtime_error("file:line: expr: status string") when a cuBLAS call fails.
namespace detail {
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file,
                                     int line);
inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, expr, file, line);
}
}  // namespace detail
#define LORASCHED_CUBLAS_CHECK(expr) \
  ::lorasched::kernels::cuda::detail::check_cublas((expr), #expr, __FILE__, __LINE__)

// y[m, n] = x[m, k] W[n, k]^T (+ y if accumulate), all three in `dtype`, fp32 accumulation
// (CUBLAS_COMPUTE_32F, no TF32 for kF32). Leading dimensions are row strides in elements.
void gemm_xwt(BlasHandle& blas, DType dtype, const void* x, int m, int k, int64_t ldx,
              const void* W, int n, int64_t ldw, void* y, int64_t ldy, bool accumulate,
              cudaStream_t stream = nullptr);

}  // namespace lorasched::kernels::cuda
