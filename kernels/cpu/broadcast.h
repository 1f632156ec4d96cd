// Index arithmetic for broadcast iteration on the CPU.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pk::cpu {

// Element strides of a shape that is broadcast to `out` (0 on broadcast dims).
inline void broadcast_strides(int ndim, const int64_t* shape, const int64_t* out,
                              int64_t* strides) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    strides[i] = (shape[i] == 1 && out[i] != 1) ? 0 : s;
    s *= shape[i];
  }
}

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
