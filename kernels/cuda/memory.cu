// CUDA memory kernels: a caching allocator over cudaMalloc, copies and fill.
//
// cudaMalloc and cudaFree synchronize the device and cost far more than a
// kernel, while the engine allocates every intermediate tensor anew; freed
// blocks are therefore kept in per-size free lists and handed out again.
// Sizes are rounded up (512 B granules, 2 MiB above 1 MiB) so that nearby
// sizes share lists. Reuse needs no synchronization: all work runs on one
// stream, so a block's next user runs after its previous user finished.
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace pk::cuda {

void check_cuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) +
                           " (" + cudaGetErrorString(status) + ")");
}

namespace {

size_t rounded_size(size_t bytes) {
  constexpr size_t kSmallGranule = 512, kLargeGranule = size_t{2} << 20,
                   kLargeFrom = size_t{1} << 20;
  const size_t granule = bytes > kLargeFrom ? kLargeGranule : kSmallGranule;
  const size_t n = bytes == 0 ? 1 : bytes;
  return (n + granule - 1) / granule * granule;
}

class CachingAllocator {
 public:
  void* allocate(size_t bytes) {
    const size_t size = rounded_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto cached = free_.find(size);
    if (cached != free_.end() && !cached->second.empty()) {
      ptr = cached->second.back();
      cached->second.pop_back();
    } else {
      ptr = fresh_block(size);
    }
    live_[ptr] = size;
    return ptr;
  }

  void deallocate(void* ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end())
      throw std::runtime_error("cuda release: pointer was not allocated by the CUDA backend");
    free_[it->second].push_back(ptr);
    live_.erase(it);
  }

 private:
  // cudaMalloc, retried once after returning every cached block to the
  // driver when the device is out of memory. Caller holds the mutex.
  void* fresh_block(size_t size) {
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the (non-sticky) error before retrying
      release_cached();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      check_cuda(status, ("cudaMalloc of " + std::to_string(size) + " bytes").c_str());
    }
    return ptr;
  }

  void release_cached() {
    // Blocks released by scratch buffers may still be in use by queued kernels.
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    for (auto& [size, blocks] : free_)
      for (void* block : blocks) check_cuda(cudaFree(block), "cudaFree");
    free_.clear();
  }

  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;               // handed-out block -> size
  std::unordered_map<size_t, std::vector<void*>> free_;  // size -> cached blocks
};

// Never destroyed: tensors in static storage release their blocks during
// program exit, possibly after this object's destructor would have run.
CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator();
  return *instance;
}

__global__ void fill_kernel(float* out, int64_t n, float value) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) out[i] = value;
}

void device_to_device(void* dst, const void* src, size_t bytes) {
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0),
             "cudaMemcpyAsync (device to device)");
}

}  // namespace

void* alloc(size_t bytes) { return allocator().allocate(bytes); }

void release(void* ptr) { allocator().deallocate(ptr); }

void copy_from_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
}

// Waits for the queued kernels that produce src: the one synchronization point.
void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  const char* d = static_cast<const char*>(dst);
  const char* s = static_cast<const char*>(src);
  if (d < s + bytes && s < d + bytes) {  // overlapping ranges (memmove semantics): via a copy
    Scratch staging(bytes);
    device_to_device(staging.as<void>(), src, bytes);
    device_to_device(dst, staging.as<void>(), bytes);
    return;
  }
  device_to_device(dst, src, bytes);
}

void fill(float* out, int64_t n, float value) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n), kThreads>>>(out, n, value);
  check_launch("fill_kernel");
}

}  // namespace pk::cuda
