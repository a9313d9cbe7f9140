// The cuda executor's factory in a build without the CUDA backend (LORASCHED_HAVE_CUDA off):
// it is not built, and says so. The real one is in cuda_executor.cpp.
#include "core/common/error.hpp"
#include "core/exec/cuda_factory.hpp"

namespace lorasched {

namespace {
constexpr const char* kNotBuilt =
    "executor \"cuda\" is not available in this build (built without the CUDA backend: "
    "configure with -DLORASCHED_CUDA=ON where nvcc is installed); use \"cpu\" or \"costmodel\"";
}  // namespace

bool cuda_executor_built() { return false; }

CudaDeviceInfo cuda_device_info() {
  CudaDeviceInfo info;
  info.reason = "built without the CUDA backend";
  return info;
}

void require_cuda_device() { throw InputError(kNotBuilt); }

std::unique_ptr<Executor> make_cuda_executor(const ModelWeights& /*weights*/,
                                             std::shared_ptr<const std::vector<LoraAdapterWeights>>,
                                             int64_t /*kv_blocks*/, int32_t /*block_size*/) {
  throw InputError(kNotBuilt);
}

}  // namespace lorasched
