// Shared pieces of the CUDA backend: the kernel declarations, error checks,
// launch geometry, block reductions and scratch buffers.
//
// Every kernel runs on the legacy default stream, so launches, cuBLAS and
// cuDNN calls and cudaMemcpy are ordered with each other without any
// synchronization; only copies to the host wait for the device.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace pk::cuda {

PK_KERNELS(PK_DECLARE_KERNEL)

// Throws std::runtime_error naming `what` (the failing call) and CUDA's
// description of the error.
void check_cuda(cudaError_t status, const char* what);

// Whether matrix products may use TF32 tensor cores: only when the
// environment sets PACKPTQ_ALLOW_TF32=1 (gemm.cu); fp32 otherwise.
bool tf32_allowed();

// Checks that the kernel launch just issued was accepted.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

constexpr int kThreads = 256;  // threads per block of the element-wise kernels
constexpr int kWarp = 32;

// Blocks for a grid-stride loop over n items: enough to fill the device,
// capped so that each thread handles several items on large inputs.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  constexpr int64_t kMaxBlocks = 8192;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// Index of this thread in a grid-stride loop and the loop's stride.
__device__ inline int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Row kernels run a warp per row, kWarpsPerBlock rows per block, in a
// grid-stride loop over rows.
constexpr int kWarpsPerBlock = kThreads / kWarp;

inline unsigned row_blocks(int64_t rows) { return grid_for(rows, kWarpsPerBlock); }

__device__ inline int64_t global_warp() {
  return static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
}
__device__ inline int64_t warp_stride() { return static_cast<int64_t>(gridDim.x) * kWarpsPerBlock; }

__device__ inline double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over a block of kThreads threads; the result is valid in thread 0.
// Safe to call repeatedly in one kernel (a barrier guards the shared slots).
__device__ inline double block_sum(double v) {
  __shared__ double warp_totals[kThreads / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // earlier calls may still read warp_totals
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();
  v = 0.0;
  if (warp == 0) {
    if (lane < kThreads / kWarp) v = warp_totals[lane];
    v = warp_sum(v);
  }
  return v;
}

// Device memory from the caching allocator (memory.cu) that goes back to it
// when the scope ends. Later kernels on the stream may reuse it at once,
// which is safe: they run after every kernel already queued.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : ptr_(alloc(bytes)) {}
  ~Scratch() { release(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_;
};

// Splits of a reduction of `per_output` items for each of `outputs` results
// so that the grid holds about `target_blocks` blocks while each split still
// covers at least `min_items` items.
inline int64_t reduction_splits(int64_t outputs, int64_t per_output, int64_t target_blocks,
                                int64_t min_items) {
  int64_t by_work = (per_output + min_items - 1) / min_items;
  int64_t by_grid = (target_blocks + outputs - 1) / (outputs > 0 ? outputs : 1);
  int64_t splits = by_work < by_grid ? by_work : by_grid;
  constexpr int64_t kMaxSplits = 65535;  // gridDim.y limit
  if (splits > kMaxSplits) splits = kMaxSplits;
  return splits < 1 ? 1 : splits;
}

// Per-channel reductions see a tensor as [outer, C, inner] (NCHW: N, C, HW)
// and run one block per (channel, split). Element k of channel c's
// outer * inner values:
__device__ inline int64_t channel_element(int64_t k, int64_t c, int64_t C, int64_t inner) {
  return ((k / inner) * C + c) * inner + k % inner;
}

// Span [begin, end) of `items` that split `split` of `splits` covers.
__host__ __device__ inline void split_span(int64_t items, int64_t split, int64_t splits,
                                           int64_t& begin, int64_t& end) {
  const int64_t chunk = (items + splits - 1) / splits;
  begin = split * chunk;
  end = begin + chunk < items ? begin + chunk : items;
}

// out[o] = (sum over s of partial[s * n + o]) / divisor: the double partial
// sums of a split reduction, added up in order.
void finish_split_sums(const double* partial, int64_t splits, int64_t n, double divisor,
                       float* out);
void finish_split_sums(const double* partial, int64_t splits, int64_t n, double divisor,
                       double* out);

}  // namespace pk::cuda
