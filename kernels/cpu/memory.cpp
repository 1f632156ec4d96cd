// CPU memory kernels: 64-byte aligned host buffers.
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/kernels.h"

namespace pk::cpu {

void* alloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  return p;
}

void release(void* ptr) { std::free(ptr); }

void copy_from_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_on_device(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }

void fill(float* out, int64_t n, float value) {
#pragma omp parallel for simd if (parallel: n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}

}  // namespace pk::cpu
