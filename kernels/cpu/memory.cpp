// CPU memory kernels: 64-byte aligned host buffers, large ones reused.
//
// glibc serves blocks above its mmap threshold (32 MiB at most) as fresh
// mappings, so every large intermediate tensor of a 224 px network paid
// page faults and the kernel's zeroing of its pages on each use (forward of
// mobilenetv2 at batch 16 on 2 threads: 49-59 img/s, 107 with reuse). Freed
// blocks of 1 to 256 MiB therefore go to per-size free lists (2 MiB
// granules) and serve later requests of their size, up to kMaxCachedBytes
// in all. Smaller blocks go straight back to malloc, which keeps them
// itself; larger ones (a unit's captured calibration activations) are
// allocated once per unit and go back to the system.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

// Each block starts with a header holding its payload size; 64 bytes keep
// the payload 64-byte aligned.
constexpr size_t kHeader = 64;
constexpr size_t kCachedFrom = size_t{1} << 20;
constexpr size_t kCachedUpTo = size_t{256} << 20;
constexpr size_t kGranule = size_t{2} << 20;
constexpr size_t kMaxCachedBytes = size_t{1} << 30;

size_t round_up(size_t bytes, size_t granule) { return (bytes + granule - 1) / granule * granule; }

bool cacheable(size_t payload) { return payload >= kCachedFrom && payload <= kCachedUpTo; }

class LargeBlockCache {
 public:
  // A cached block of exactly this payload size, or nullptr.
  void* take(size_t payload) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(payload);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* base = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= payload;
    return base;
  }

  // Keeps a freed block; false when the cache is full (the caller frees it).
  bool keep(void* base, size_t payload) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_bytes_ + payload > kMaxCachedBytes) return false;
    free_[payload].push_back(base);
    cached_bytes_ += payload;
    return true;
  }

  // Returns every cached block to the system (before retrying an allocation
  // that failed).
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [payload, blocks] : free_)
      for (void* base : blocks) std::free(base);
    free_.clear();
    cached_bytes_ = 0;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

// Never destroyed: tensors that outlive static destruction still release
// their storage here.
LargeBlockCache& block_cache() {
  static LargeBlockCache* cache = new LargeBlockCache();
  return *cache;
}

void* fresh_block(size_t payload) {
  void* base = std::aligned_alloc(64, kHeader + payload);
  if (!base && payload >= kCachedFrom) {
    block_cache().clear();
    base = std::aligned_alloc(64, kHeader + payload);
  }
  if (!base) throw std::bad_alloc();
  return base;
}

}  // namespace

void* alloc(size_t bytes) {
  if (bytes > SIZE_MAX / 2) throw std::bad_alloc();  // no request this large can succeed
  const size_t payload = bytes >= kCachedFrom ? round_up(bytes, kGranule)
                                               : round_up(std::max<size_t>(bytes, 1), 64);
  void* base = cacheable(payload) ? block_cache().take(payload) : nullptr;
  if (!base) base = fresh_block(payload);
  *static_cast<size_t*>(base) = payload;
  return static_cast<char*>(base) + kHeader;
}

void release(void* ptr) {
  if (!ptr) return;
  void* base = static_cast<char*>(ptr) - kHeader;
  const size_t payload = *static_cast<const size_t*>(base);
  if (!cacheable(payload) || !block_cache().keep(base, payload)) std::free(base);
}

void copy_from_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_on_device(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }

void fill(float* out, int64_t n, float value) {
#pragma omp parallel for simd if (parallel: n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}

}  // namespace pk::cpu
