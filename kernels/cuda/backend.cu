// The CUDA kernel table, offered only when a CUDA device is present at run
// time: a build with the CUDA backend still runs on machines without a GPU
// (or without a driver), on the CPU backend.
#include "kernels/cuda/common.cuh"

namespace pk {

const Backend* cuda_backend_if_available() {
  static const Backend* const table = []() -> const Backend* {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();  // leave no error behind for later calls to report
      return nullptr;
    }
#define PK_CUDA_ENTRY(name, ...) &cuda::name,
    static const Backend kCudaBackend = {PK_KERNELS(PK_CUDA_ENTRY)};
#undef PK_CUDA_ENTRY
    return &kCudaBackend;
  }();
  return table;
}

}  // namespace pk
