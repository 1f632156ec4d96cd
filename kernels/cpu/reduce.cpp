// Reductions between broadcast-compatible shapes: summing a tensor down to a
// smaller shape (1 on summed dims) and its adjoint, broadcasting back up.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/broadcast.h"
#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/kernels.h"

namespace pk::cpu {

// s.a: input shape; s.out: target shape of the same rank with 1 on summed dims.
void sum_to_shape(const BroadcastShape& s, const float* x, float* out) {
  const int nd = s.ndim;
  int64_t n_in = 1, n_out = 1;
  for (int d = 0; d < nd; ++d) { n_in *= s.a[d]; n_out *= s.out[d]; }
  if (n_out == 0) return;
  if (n_in == 0) {
    for (int64_t o = 0; o < n_out; ++o) out[o] = 0.0f;
    return;
  }
  int64_t in_strides[kMaxDims];
  broadcast_strides(nd, s.a, s.a, in_strides);
  // Summed dims, innermost last, with their input strides.
  int64_t red_size[kMaxDims], red_stride[kMaxDims];
  int nr = 0;
  for (int d = 0; d < nd; ++d)
    if (s.out[d] == 1 && s.a[d] != 1) { red_size[nr] = s.a[d]; red_stride[nr] = in_strides[d]; ++nr; }
  const int64_t per_out = n_in / n_out;

  if (n_out >= 4 * omp_get_max_threads() || per_out < 4096) {
    // Enough outputs to share out: each sums its own reduced sub-space.
#pragma omp parallel for if (n_in > kParallelMin)
    for (int64_t o = 0; o < n_out; ++o) {
      int64_t base = 0, rem = o;
      for (int d = nd - 1; d >= 0; --d) {
        int64_t idx = rem % s.out[d];
        rem /= s.out[d];
        if (s.out[d] != 1) base += idx * in_strides[d];
      }
      double acc = 0.0;
      int64_t counter[kMaxDims] = {0};
      int64_t off = base;
      for (int64_t k = 0; k < per_out; ++k) {
        acc += x[off];
        for (int r = nr - 1; r >= 0; --r) {  // odometer over summed dims
          off += red_stride[r];
          if (++counter[r] < red_size[r]) break;
          off -= red_stride[r] * red_size[r];
          counter[r] = 0;
        }
      }
      out[o] = static_cast<float>(acc);
    }
    return;
  }
  // Few outputs, many inputs: per-thread partial sums over input chunks.
  int64_t out_strides[kMaxDims];
  broadcast_strides(nd, s.out, s.a, out_strides);
  int nt = omp_get_max_threads();
  std::vector<double> partial(static_cast<size_t>(nt) * n_out, 0.0);
#pragma omp parallel
  {
    double* mine = partial.data() + static_cast<size_t>(omp_get_thread_num()) * n_out;
    int64_t inner = s.a[nd - 1];
    int64_t inner_stride = out_strides[nd - 1];
#pragma omp for
    for (int64_t row = 0; row < n_in / inner; ++row) {
      int64_t o = broadcast_offset(nd, s.a, out_strides, row * inner);
      const float* xr = x + row * inner;
      if (inner_stride == 0) {
        double acc = 0.0;
        for (int64_t j = 0; j < inner; ++j) acc += xr[j];
        mine[o] += acc;
      } else {
        for (int64_t j = 0; j < inner; ++j) mine[o + j] += xr[j];
      }
    }
  }
  for (int64_t o = 0; o < n_out; ++o) {
    double acc = 0.0;
    for (int t = 0; t < nt; ++t) acc += partial[static_cast<size_t>(t) * n_out + o];
    out[o] = static_cast<float>(acc);
  }
}

// s.a: input shape (1 on broadcast dims); s.out: output shape.
void broadcast_to(const BroadcastShape& s, const float* x, float* out) {
  const int nd = s.ndim;
  int64_t n = 1;
  for (int d = 0; d < nd; ++d) n *= s.out[d];
  int64_t strides[kMaxDims];
  broadcast_strides(nd, s.a, s.out, strides);
  int64_t inner = nd ? s.out[nd - 1] : 1;
  int64_t inner_stride = nd ? strides[nd - 1] : 0;
  if (inner == 0) return;
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t row = 0; row < n / inner; ++row) {
    int64_t off = broadcast_offset(nd, s.out, strides, row * inner);
    float* o = out + row * inner;
    // The last dim is either broadcast (stride 0) or contiguous (stride 1).
    if (inner_stride == 0) {
      std::fill(o, o + inner, x[off]);
    } else {
      std::copy(x + off, x + off + inner, o);
    }
  }
}

}  // namespace pk::cpu
