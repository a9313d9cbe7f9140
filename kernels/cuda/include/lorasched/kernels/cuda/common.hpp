// CUDA backend basics: storage dtypes, error checking, device availability and an RAII
// device buffer. Plain C++ (no device code), so host-only translation units can include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

namespace lorasched::kernels::cuda {

// Storage dtype of activations and weights. Every kernel accumulates in fp32.
enum class DType : uint8_t { kF32, kF16, kBF16 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

// Host-side conversions (lorasched/kernels/half.hpp), identical to the device's
// round-to-nearest-even conversions (__float2half_rn / __float2bfloat16_rn) for every input but
// NaN payloads. `bits` is the raw 16-bit pattern.
uint16_t float_to_bits16(DType dtype, float value);  // dtype kF16 or kBF16
float bits16_to_float(DType dtype, uint16_t bits);   // dtype kF16 or kBF16
// value rounded to `dtype` and back (identity for kF32).
float round_to(DType dtype, float value);

namespace detail {
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
inline void check_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, expr, file, line);
}
}  // namespace detail

}  // namespace lorasched::kernels::cuda

// Throws std::runtime_error("file:line: expr: cudaErrorName: description") on failure.
#define LORASCHED_CUDA_CHECK(expr) \
  ::lorasched::kernels::cuda::detail::check_cuda((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: reports launch-configuration errors (asynchronous execution errors
// surface at the next synchronising call).
#define LORASCHED_CUDA_CHECK_LAUNCH() LORASCHED_CUDA_CHECK(cudaGetLastError())

namespace lorasched::kernels::cuda {

// True when the CUDA runtime reports at least one usable device. Otherwise false, with the
// reason (driver missing, no device, ...) in *why when why is not null.
bool cuda_device_available(std::string* why = nullptr);

// Owning, move-only array of n elements of T in device memory (cudaMalloc / cudaFree).
// Contents are uninitialised after allocation.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  // Reallocates to exactly n elements (contents lost). n == 0 frees.
  void resize(size_t n) {
    if (n == size_) return;
    release();
    if (n == 0) return;
    void* p = nullptr;
    LORASCHED_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    size_ = n;
  }
  // Reallocates only when fewer than n elements are held (contents lost when it does).
  void ensure(size_t n) {
    if (n > size_) resize(n);
  }
  void release() noexcept {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);  // cannot throw from a destructor
    ptr_ = nullptr;
    size_ = 0;
  }

  T* get() { return ptr_; }
  const T* get() const { return ptr_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }
  bool empty() const { return size_ == 0; }

  // Copies host data into the first src.size() elements. The host span may be reused as
  // soon as this returns (pageable copies are staged before cudaMemcpyAsync returns).
  void upload(std::span<const T> src, cudaStream_t stream = nullptr) {
    if (src.size() > size_) throw std::out_of_range("DeviceBuffer::upload: source too large");
    if (src.empty()) return;
    LORASCHED_CUDA_CHECK(
        cudaMemcpyAsync(ptr_, src.data(), src.size_bytes(), cudaMemcpyHostToDevice, stream));
  }
  // Copies the first dst.size() elements to the host and waits for the copy.
  void download(std::span<T> dst, cudaStream_t stream = nullptr) const {
    if (dst.size() > size_) throw std::out_of_range("DeviceBuffer::download: dest too large");
    if (dst.empty()) return;
    LORASCHED_CUDA_CHECK(
        cudaMemcpyAsync(dst.data(), ptr_, dst.size_bytes(), cudaMemcpyDeviceToHost, stream));
    LORASCHED_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  void zero(cudaStream_t stream = nullptr) {
    if (size_ != 0) LORASCHED_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, bytes(), stream));
  }

 private:
  T* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lorasched::kernels::cuda
