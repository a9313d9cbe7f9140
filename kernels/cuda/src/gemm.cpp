#include "lorasched/kernels/cuda/gemm.hpp"

#include <limits>
#include <stdexcept>
#include <string>

namespace lorasched::kernels::cuda {

namespace detail {
void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " +
                           cublasGetStatusName(status) + ": " + cublasGetStatusString(status));
}
}  // namespace detail

BlasHandle::BlasHandle(size_t workspace_bytes) {
  LORASCHED_CUBLAS_CHECK(cublasCreate(&handle_));
  try {
    workspace_.resize(workspace_bytes);
    LORASCHED_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()));
  } catch (...) {
    (void)cublasDestroy(handle_);
    throw;
  }
}

BlasHandle::~BlasHandle() {
  if (handle_ != nullptr) (void)cublasDestroy(handle_);
}

void BlasHandle::set_stream(cudaStream_t stream) {
  if (stream == stream_) return;
  LORASCHED_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  // cublasSetStream resets the workspace to the library's default pool.
  LORASCHED_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()));
  stream_ = stream;
}

namespace {
int checked_ld(int64_t ld, int min, const char* what) {
  if (ld < min || ld > std::numeric_limits<int>::max()) {
    throw std::invalid_argument(std::string("gemm_xwt: bad leading dimension ") + what);
  }
  return static_cast<int>(ld);
}
}  // namespace

void gemm_xwt(BlasHandle& blas, DType dtype, const void* x, int m, int k, int64_t ldx,
              const void* W, int n, int64_t ldw, void* y, int64_t ldy, bool accumulate,
              cudaStream_t stream) {
  if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("gemm_xwt: negative size");
  if (m == 0 || n == 0) return;
  const int lx = checked_ld(ldx, k > 0 ? k : 1, "ldx");
  const int lw = checked_ld(ldw, k > 0 ? k : 1, "ldw");
  const int ly = checked_ld(ldy, n, "ldy");
  if (y == nullptr || (k > 0 && (x == nullptr || W == nullptr))) {
    throw std::invalid_argument("gemm_xwt: null pointer");
  }
  cudaDataType_t type = CUDA_R_32F;
  switch (dtype) {
    case DType::kF32:
      type = CUDA_R_32F;
      break;
    case DType::kF16:
      type = CUDA_R_16F;
      break;
    case DType::kBF16:
      type = CUDA_R_16BF;
      break;
    default:
      throw std::invalid_argument("gemm_xwt: unknown dtype");
  }
  blas.set_stream(stream);
  // Row-major y[m, n] = x[m, k] W[n, k]^T is column-major y^T[n, m] = W^T^T x^T:
  // A = W seen column-major as [k, n] (ld ldw), transposed; B = x seen as [k, m] (ld ldx).
  const float alpha = 1.0f;
  const float beta = accumulate ? 1.0f : 0.0f;
  LORASCHED_CUBLAS_CHECK(cublasGemmEx(blas.get(), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, W,
                                      type, lw, x, type, lx, &beta, y, type, ly, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
}

}  // namespace lorasched::kernels::cuda
