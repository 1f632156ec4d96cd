// Index geometry that every backend sets up on the host the same way:
// broadcast strides and the simplified view of a permute.
#pragma once

#include "kernels/kernels.h"

namespace pk {

// Element strides of `shape` broadcast to `out` (0 on broadcast dims).
inline void broadcast_strides(int ndim, const int64_t* shape, const int64_t* out,
                              int64_t* strides) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = (shape[d] == 1 && out[d] != 1) ? 0 : s;
    s *= shape[d];
  }
}

// The output-ordered view of a permute: per output dim its size and the
// input stride it steps, with size-1 dims dropped and dims that stay adjacent
// in the input merged, so that the index arithmetic runs over few dims
// (Swin's window partition shrinks from 6 dims to 4).
struct PermuteView {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t in_stride[kMaxDims];
};

inline PermuteView simplify_permute(const PermuteGeom& g) {
  int64_t in_strides[kMaxDims];
  int64_t s = 1;
  for (int d = g.ndim - 1; d >= 0; --d) {
    in_strides[d] = s;
    s *= g.in_shape[d];
  }
  PermuteView v;
  for (int i = 0; i < g.ndim; ++i) {
    const int64_t size = g.in_shape[g.perm[i]], stride = in_strides[g.perm[i]];
    if (size == 1) continue;
    if (v.ndim > 0 && v.in_stride[v.ndim - 1] == stride * size) {  // continues the previous dim
      v.size[v.ndim - 1] *= size;
      v.in_stride[v.ndim - 1] = stride;
      continue;
    }
    v.size[v.ndim] = size;
    v.in_stride[v.ndim] = stride;
    ++v.ndim;
  }
  return v;
}

}  // namespace pk
