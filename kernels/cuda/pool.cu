// 2D pooling on CUDA with the CPU backend's (PyTorch's) rules: max pooling
// where padding never wins, the first of equal maxima wins and NaN
// propagates; average pooling with the count_include_pad divisor; adaptive
// average pooling over bins [floor(i*H/OH), ceil((i+1)*H/OH)).
//
// Forward passes use a thread per output. Average backward passes gather:
// a thread per input element sums the outputs whose window covers it, so
// no two threads write one element. Max backward scatters to the argmax
// with atomicAdd, as overlapping windows may share it.
#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

// A pooling window along one axis: [start, end) clipped to the input, and
// its size counting padding (the padded end is clipped at size + pad).
struct Window {
  int64_t start, end, padded_size;
};

__device__ inline Window window(int64_t out_index, int64_t kernel, int64_t stride, int64_t pad,
                                int64_t size) {
  const int64_t start = out_index * stride - pad;
  const int64_t end = min(start + kernel, size + pad);
  return {max(start, int64_t{0}), min(end, size), end - start};
}

__device__ inline Window adaptive_bin(int64_t i, int64_t size, int64_t out_size) {
  const int64_t start = i * size / out_size;
  const int64_t end = ((i + 1) * size + out_size - 1) / out_size;
  return {start, end, end - start};
}

__device__ inline float avg_divisor(const PoolGeom& g, const Window& wh, const Window& ww) {
  return g.count_include_pad ? static_cast<float>(wh.padded_size * ww.padded_size)
                             : static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
}

// Flat in-plane index of the maximum over a window (-1 if empty).
__device__ inline int64_t window_argmax(const float* xp, int64_t W, const Window& wh,
                                        const Window& ww) {
  float best = -INFINITY;
  int64_t best_index = -1;
  for (int64_t ih = wh.start; ih < wh.end; ++ih) {
    for (int64_t iw = ww.start; iw < ww.end; ++iw) {
      const float v = xp[ih * W + iw];
      if (isnan(v)) return ih * W + iw;
      if (v > best) {  // strict: the first of equal maxima wins
        best = v;
        best_index = ih * W + iw;
      }
    }
  }
  return best_index;
}

// Output positions o in [lo, hi] whose pooling window may cover input
// position i: start(o) <= i < start(o) + kernel.
__device__ inline void covering_outputs(int64_t i, int64_t kernel, int64_t stride, int64_t pad,
                                        int64_t out_size, int64_t& lo, int64_t& hi) {
  const int64_t first = i + pad - kernel + 1;  // o * stride >= first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = min((i + pad) / stride, out_size - 1);
}

__global__ void max_pool_forward_kernel(PoolGeom g, const float* x, float* y, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, plane = i / (g.OW * g.OH);
    const float* xp = x + plane * g.H * g.W;
    const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
    const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
    const int64_t best = window_argmax(xp, g.W, wh, ww);
    y[i] = best >= 0 ? xp[best] : -INFINITY;
  }
}

// dx must be zero: each output adds its gradient at its argmax.
__global__ void max_pool_backward_kernel(PoolGeom g, const float* x, const float* dy, float* dx,
                                         int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, plane = i / (g.OW * g.OH);
    const float* xp = x + plane * g.H * g.W;
    const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
    const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
    const int64_t best = window_argmax(xp, g.W, wh, ww);
    if (best >= 0) atomicAdd(dx + plane * g.H * g.W + best, dy[i]);
  }
}

__global__ void avg_pool_forward_kernel(PoolGeom g, const float* x, float* y, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, plane = i / (g.OW * g.OH);
    const float* xp = x + plane * g.H * g.W;
    const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
    const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
    float total = 0.0f;
    for (int64_t ih = wh.start; ih < wh.end; ++ih)
      for (int64_t iw = ww.start; iw < ww.end; ++iw) total += xp[ih * g.W + iw];
    y[i] = total / avg_divisor(g, wh, ww);
  }
}

__global__ void avg_pool_backward_kernel(PoolGeom g, const float* dy, float* dx, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t iw = i % g.W, ih = (i / g.W) % g.H, plane = i / (g.W * g.H);
    const float* dyp = dy + plane * g.OH * g.OW;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering_outputs(ih, g.KH, g.stride_h, g.pad_h, g.OH, oh_lo, oh_hi);
    covering_outputs(iw, g.KW, g.stride_w, g.pad_w, g.OW, ow_lo, ow_hi);
    float total = 0.0f;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
      if (ih < wh.start || ih >= wh.end) continue;
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
        if (iw < ww.start || iw >= ww.end) continue;
        total += dyp[oh * g.OW + ow] / avg_divisor(g, wh, ww);
      }
    }
    dx[i] = total;
  }
}

__global__ void adaptive_avg_forward_kernel(int64_t H, int64_t W, int64_t OH, int64_t OW,
                                            const float* x, float* y, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t ow = i % OW, oh = (i / OW) % OH, plane = i / (OW * OH);
    const float* xp = x + plane * H * W;
    const Window wh = adaptive_bin(oh, H, OH), ww = adaptive_bin(ow, W, OW);
    float total = 0.0f;
    for (int64_t ih = wh.start; ih < wh.end; ++ih)
      for (int64_t iw = ww.start; iw < ww.end; ++iw) total += xp[ih * W + iw];
    y[i] = total / static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
  }
}

// Bins covering input position i of `size`: o in [floor(i*out/size), ceil((i+1)*out/size) - 1].
__device__ inline void covering_bins(int64_t i, int64_t size, int64_t out_size, int64_t& lo,
                                     int64_t& hi) {
  lo = i * out_size / size;
  hi = min(((i + 1) * out_size + size - 1) / size - 1, out_size - 1);
}

__global__ void adaptive_avg_backward_kernel(int64_t H, int64_t W, int64_t OH, int64_t OW,
                                             const float* dy, float* dx, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t iw = i % W, ih = (i / W) % H, plane = i / (W * H);
    const float* dyp = dy + plane * OH * OW;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering_bins(ih, H, OH, oh_lo, oh_hi);
    covering_bins(iw, W, OW, ow_lo, ow_hi);
    float total = 0.0f;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      const Window wh = adaptive_bin(oh, H, OH);
      if (ih < wh.start || ih >= wh.end) continue;
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const Window ww = adaptive_bin(ow, W, OW);
        if (iw < ww.start || iw >= ww.end) continue;
        total += dyp[oh * OW + ow] / static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
      }
    }
    dx[i] = total;
  }
}

}  // namespace

void max_pool2d_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t n = g.N * g.C * g.OH * g.OW;
  if (n <= 0) return;
  max_pool_forward_kernel<<<grid_for(n), kThreads>>>(g, x, y, n);
  check_launch("max_pool_forward_kernel");
}

// Recomputes the argmax from x (no saved indices) and routes dy there.
void max_pool2d_backward(const PoolGeom& g, const float* x, const float* dy, float* dx) {
  fill(dx, g.N * g.C * g.H * g.W, 0.0f);
  const int64_t n = g.N * g.C * g.OH * g.OW;
  if (n <= 0) return;
  max_pool_backward_kernel<<<grid_for(n), kThreads>>>(g, x, dy, dx, n);
  check_launch("max_pool_backward_kernel");
}

void avg_pool2d_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t n = g.N * g.C * g.OH * g.OW;
  if (n <= 0) return;
  avg_pool_forward_kernel<<<grid_for(n), kThreads>>>(g, x, y, n);
  check_launch("avg_pool_forward_kernel");
}

void avg_pool2d_backward(const PoolGeom& g, const float* dy, float* dx) {
  const int64_t n = g.N * g.C * g.H * g.W;
  if (n <= 0) return;
  avg_pool_backward_kernel<<<grid_for(n), kThreads>>>(g, dy, dx, n);
  check_launch("avg_pool_backward_kernel");
}

void adaptive_avg_pool2d_forward(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 const float* x, float* y) {
  const int64_t n = NC * OH * OW;
  if (n <= 0) return;
  adaptive_avg_forward_kernel<<<grid_for(n), kThreads>>>(H, W, OH, OW, x, y, n);
  check_launch("adaptive_avg_forward_kernel");
}

void adaptive_avg_pool2d_backward(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                  const float* dy, float* dx) {
  const int64_t n = NC * H * W;
  if (n <= 0) return;
  adaptive_avg_backward_kernel<<<grid_for(n), kThreads>>>(H, W, OH, OW, dy, dx, n);
  check_launch("adaptive_avg_backward_kernel");
}

}  // namespace pk::cuda
