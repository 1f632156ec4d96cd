// Broadcast index arithmetic on the device: the strides a broadcast operand
// walks per output dim (0 on broadcast dims), set up on the host.
#pragma once

#include <cstdint>

#include "kernels/index_geometry.h"
#include "kernels/kernels.h"

namespace pk::cuda {

struct BroadcastIndex {
  int ndim;
  bool trivial;  // every operand has the output's shape: offsets equal the index
  int64_t out[kMaxDims];
  int64_t stride_a[kMaxDims];
  int64_t stride_b[kMaxDims];
};

inline BroadcastIndex make_broadcast_index(const BroadcastShape& s) {
  BroadcastIndex g{};
  g.ndim = s.ndim;
  g.trivial = true;
  for (int d = 0; d < s.ndim; ++d) {
    g.out[d] = s.out[d];
    if (s.a[d] != s.out[d] || s.b[d] != s.out[d]) g.trivial = false;
  }
  broadcast_strides(s.ndim, s.a, s.out, g.stride_a);
  broadcast_strides(s.ndim, s.b, s.out, g.stride_b);
  return g;
}

// Offsets into operands a and b of output element i.
__device__ inline void broadcast_offsets(const BroadcastIndex& g, int64_t i, int64_t& offset_a,
                                         int64_t& offset_b) {
  if (g.trivial) {
    offset_a = offset_b = i;
    return;
  }
  offset_a = offset_b = 0;
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % g.out[d];
    i /= g.out[d];
    offset_a += idx * g.stride_a[d];
    offset_b += idx * g.stride_b[d];
  }
}

}  // namespace pk::cuda
