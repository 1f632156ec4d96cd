// Index arithmetic for broadcast iteration on the CPU.
#pragma once

#include <cstdint>

#include "kernels/index_geometry.h"
#include "kernels/kernels.h"

namespace pk::cpu {

// Offset into a broadcast operand of the output element with linear index i.
inline int64_t broadcast_offset(int ndim, const int64_t* out, const int64_t* strides, int64_t i) {
  int64_t off = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    int64_t idx = i % out[d];
    i /= out[d];
    off += idx * strides[d];
  }
  return off;
}

}  // namespace pk::cpu
