// Layout CUDA kernels: permute, block copies along one axis (concat, narrow,
// pad and their backwards), cyclic roll and index_select.
#include "kernels/cuda/common.cuh"
#include "kernels/index_geometry.h"

namespace pk::cuda {

namespace {

// Each thread writes output elements in order and gathers from the input.
__global__ void permute_kernel(PermuteView v, const float* x, float* y, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    int64_t rest = i, offset = 0;
    for (int d = v.ndim - 1; d >= 0; --d) {
      offset += (rest % v.size[d]) * v.in_stride[d];
      rest /= v.size[d];
    }
    y[i] = x[offset];
  }
}

__global__ void copy_block_kernel(int64_t run, const float* src, int64_t src_row,
                                  int64_t src_offset, float* dst, int64_t dst_row,
                                  int64_t dst_offset, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t o = i / run, j = i % run;
    dst[o * dst_row + dst_offset + j] = src[o * src_row + src_offset + j];
  }
}

__global__ void index_select_forward_kernel(AxisGeom g, const int64_t* idx, int64_t n_idx,
                                            const float* x, float* y, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t inner = i % g.inner, row = i / g.inner;
    const int64_t j = row % n_idx, o = row / n_idx;
    y[i] = x[(o * g.dim + idx[j]) * g.inner + inner];
  }
}

// dx must be zero: repeated indices add into the same rows.
__global__ void index_select_backward_kernel(AxisGeom g, const int64_t* idx, int64_t n_idx,
                                             const float* dy, float* dx, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t inner = i % g.inner, row = i / g.inner;
    const int64_t j = row % n_idx, o = row / n_idx;
    atomicAdd(dx + (o * g.dim + idx[j]) * g.inner + inner, dy[i]);
  }
}

}  // namespace

void permute(const PermuteGeom& g, const float* x, float* y) {
  int64_t n = 1;
  for (int d = 0; d < g.ndim; ++d) n *= g.in_shape[d];
  if (n == 0) return;
  const PermuteView v = simplify_permute(g);
  if (v.ndim <= 1) {  // the permutation moves nothing
    copy_on_device(y, x, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  permute_kernel<<<grid_for(n), kThreads>>>(v, x, y, n);
  check_launch("permute_kernel");
}

void copy_axis_block(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim,
                     int64_t src_start, float* dst, int64_t dst_dim, int64_t dst_start) {
  const int64_t run = len * inner;  // contiguous floats per outer index
  if (outer == 0 || run == 0) return;
  const int64_t n = outer * run;
  copy_block_kernel<<<grid_for(n), kThreads>>>(run, src, src_dim * inner, src_start * inner, dst,
                                               dst_dim * inner, dst_start * inner, n);
  check_launch("copy_block_kernel");
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
  const int64_t n = g.outer * n_idx * g.inner;
  if (n <= 0) return;
  index_select_forward_kernel<<<grid_for(n), kThreads>>>(g, idx, n_idx, x, y, n);
  check_launch("index_select_forward_kernel");
}

void index_select_backward(const AxisGeom& g, const int64_t* idx, int64_t n_idx, const float* dy,
                           float* dx) {
  fill(dx, g.outer * g.dim * g.inner, 0.0f);
  const int64_t n = g.outer * n_idx * g.inner;
  if (n <= 0) return;
  index_select_backward_kernel<<<grid_for(n), kThreads>>>(g, idx, n_idx, dy, dx, n);
  check_launch("index_select_backward_kernel");
}

}  // namespace pk::cuda
