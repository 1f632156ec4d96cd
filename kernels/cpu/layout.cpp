// Layout CPU kernels: permute, block copies along one axis (concat, narrow,
// pad and their backwards), cyclic roll and index_select.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/index_geometry.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

constexpr int64_t kMinChunk = 16384;  // elements one task copies at least
constexpr int64_t kTile = 32;         // transpose tile edge: 32x32 floats fit in L1

// Calls f(begin, end) on contiguous ranges of [0, n), one per thread when the
// work (n * cost elements) is worth sharing.
template <typename F>
void parallel_ranges(int64_t n, int64_t cost, F f) {
  if (n <= 0) return;
  if (n * cost <= kParallelMin || n == 1) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) f(begin, end);
  }
}

// Input offset of the first element of output row `row`, where rows run over
// dims [0, ndim) of v; `skip` (or -1) is a dim held at index 0.
int64_t row_offset(const PermuteView& v, int ndim, int skip, int64_t row) {
  int64_t off = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    if (d == skip) continue;
    off += (row % v.size[d]) * v.in_stride[d];
    row /= v.size[d];
  }
  return off;
}

// Last output dim contiguous in the input too: copy runs of `inner` floats,
// walking the input offset of consecutive rows with an odometer.
void permute_runs(const PermuteView& v, const float* x, float* y) {
  const int nd = v.ndim - 1;  // dims that index rows
  const int64_t inner = v.size[nd];
  int64_t rows = 1;
  for (int d = 0; d < nd; ++d) rows *= v.size[d];
  parallel_ranges(rows, inner, [&](int64_t begin, int64_t end) {
    int64_t counter[kMaxDims];
    int64_t rem = begin, off = 0;
    for (int d = nd - 1; d >= 0; --d) {
      counter[d] = rem % v.size[d];
      rem /= v.size[d];
      off += counter[d] * v.in_stride[d];
    }
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(y + r * inner, x + off, inner * sizeof(float));
      for (int d = nd - 1; d >= 0; --d) {
        off += v.in_stride[d];
        if (++counter[d] < v.size[d]) break;
        off -= v.in_stride[d] * v.size[d];
        counter[d] = 0;
      }
    }
  });
}

// The input's contiguous dim lands at output dim q < last: a batched 2-D
// transpose between dims q and last, done in tiles so that both the reads
// and the writes stay within a few cache lines.
void permute_tiled(const PermuteView& v, const float* x, float* y) {
  const int last = v.ndim - 1;
  int q = 0;
  while (v.in_stride[q] != 1) ++q;
  int64_t out_strides[kMaxDims];
  int64_t s = 1;
  for (int d = last; d >= 0; --d) {
    out_strides[d] = s;
    s *= v.size[d];
  }
  const int64_t rows = v.size[q], cols = v.size[last];
  const int64_t col_stride_in = v.in_stride[last], row_stride_out = out_strides[q];
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  const int64_t outer = s / (rows * cols);  // combinations of the other dims
  const int64_t tasks = outer * row_tiles * col_tiles;
#pragma omp parallel for schedule(static) if (s > kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    int64_t o = t / (row_tiles * col_tiles), tile = t % (row_tiles * col_tiles);
    int64_t r0 = (tile / col_tiles) * kTile, c0 = (tile % col_tiles) * kTile;
    int64_t r1 = std::min(r0 + kTile, rows), c1 = std::min(c0 + kTile, cols);
    // Offsets of the outer combination o, over all dims but q and last.
    int64_t in_base = row_offset(v, last, q, o), out_base = 0, rem = o;
    for (int d = last - 1; d >= 0; --d) {
      if (d == q) continue;
      out_base += (rem % v.size[d]) * out_strides[d];
      rem /= v.size[d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + in_base + r;
      float* yr = y + out_base + r * row_stride_out;
      for (int64_t c = c0; c < c1; ++c) yr[c] = xr[c * col_stride_in];
    }
  }
}

}  // namespace

void permute(const PermuteGeom& g, const float* x, float* y) {
  int64_t n = 1;
  for (int d = 0; d < g.ndim; ++d) n *= g.in_shape[d];
  if (n == 0) return;
  PermuteView v = simplify_permute(g);
  if (v.ndim <= 1) {  // the permutation moves nothing
    copy_axis_block(1, 1, n, x, n, 0, y, n, 0);
    return;
  }
  if (v.in_stride[v.ndim - 1] == 1) permute_runs(v, x, y);
  else permute_tiled(v, x, y);
}

void copy_axis_block(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim,
                     int64_t src_start, float* dst, int64_t dst_dim, int64_t dst_start) {
  const int64_t run = len * inner;  // contiguous floats per outer index
  if (outer == 0 || run == 0) return;
  // Long runs (concat along dim 0) are split into chunks so that threads
  // share them too.
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(run / kMinChunk, omp_get_max_threads()));
  const int64_t tasks = outer * chunks;
#pragma omp parallel for schedule(static) if (outer * run > kParallelMin && tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    int64_t o = t / chunks, c = t % chunks;
    int64_t begin = run * c / chunks, end = run * (c + 1) / chunks;
    std::memcpy(dst + (o * dst_dim + dst_start) * inner + begin,
                src + (o * src_dim + src_start) * inner + begin, (end - begin) * sizeof(float));
  }
}

void roll(const AxisGeom& g, int64_t shift, const float* x, float* y) {
  if (g.dim == 0) return;
  const int64_t s = ((shift % g.dim) + g.dim) % g.dim;
  // x[:, 0 : dim-s] goes to y[:, s : dim] and the wrapped tail to the front.
  copy_axis_block(g.outer, g.inner, g.dim - s, x, g.dim, 0, y, g.dim, s);
  copy_axis_block(g.outer, g.inner, s, x, g.dim, g.dim - s, y, g.dim, 0);
}

void index_select_forward(const AxisGeom& g, const int64_t* idx, int64_t n_idx, const float* x,
                          float* y) {
  const int64_t rows = g.outer * n_idx;
#pragma omp parallel for schedule(static) if (rows * g.inner > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t o = r / n_idx, j = r % n_idx;
    std::memcpy(y + r * g.inner, x + (o * g.dim + idx[j]) * g.inner, g.inner * sizeof(float));
  }
}

void index_select_backward(const AxisGeom& g, const int64_t* idx, int64_t n_idx, const float* dy,
                           float* dx) {
  // Repeated indices add into the same dx row, so each task owns a column
  // range of one outer slice and walks all indices itself: no two threads
  // ever write one element.
  const int64_t chunks = std::max<int64_t>(
      1, std::min<int64_t>(g.inner / 64, omp_get_max_threads()));
  const int64_t tasks = g.outer * chunks;
#pragma omp parallel for schedule(static) if (g.outer * (g.dim + n_idx) * g.inner > kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    int64_t o = t / chunks, c = t % chunks;
    int64_t begin = g.inner * c / chunks, end = g.inner * (c + 1) / chunks;
    float* dxo = dx + o * g.dim * g.inner;
    for (int64_t k = 0; k < g.dim; ++k)
      std::fill(dxo + k * g.inner + begin, dxo + k * g.inner + end, 0.0f);
    const float* dyo = dy + o * n_idx * g.inner;
    for (int64_t j = 0; j < n_idx; ++j) {
      float* dst = dxo + idx[j] * g.inner;
      const float* src = dyo + j * g.inner;
      for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
    }
  }
}

}  // namespace pk::cpu
