// 2D pooling on the CPU, matching PyTorch: max pooling (padding never wins;
// ties go to the first maximum in row-major window order; NaN propagates),
// average pooling with the count_include_pad divisor, adaptive average
// pooling with bins [floor(i*H/OH), ceil((i+1)*H/OH)). Planes (n, c) are
// independent, so each thread owns whole planes and backward scatters
// without races.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

// Pooling spreads over threads from half the element-wise threshold: its
// elements each read or write a window, more work than an element-wise op's.
constexpr int64_t kPoolParallelMin = kParallelMin / 2;

// A pooling window along one axis: [start, end) clipped to the input, and
// its size counting padding (PyTorch clips the padded end at size + pad).
struct Window {
  int64_t start, end, padded_size;
};

Window window(int64_t out_index, int64_t kernel, int64_t stride, int64_t pad, int64_t size) {
  int64_t start = out_index * stride - pad;
  int64_t end = std::min(start + kernel, size + pad);
  const int64_t padded_size = end - start;
  return {std::max<int64_t>(start, 0), std::min(end, size), padded_size};
}

// Flat in-plane index of the maximum of x over a window (-1 if empty).
int64_t window_argmax(const float* xp, int64_t W, const Window& wh, const Window& ww) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_index = -1;
  for (int64_t ih = wh.start; ih < wh.end; ++ih) {
    for (int64_t iw = ww.start; iw < ww.end; ++iw) {
      const float v = xp[ih * W + iw];
      if (v > best || std::isnan(v)) {  // strict: the first of equal maxima wins
        best = v;
        best_index = ih * W + iw;
        if (std::isnan(v)) return best_index;
      }
    }
  }
  return best_index;
}

float avg_divisor(const PoolGeom& g, const Window& wh, const Window& ww) {
  return g.count_include_pad ? static_cast<float>(wh.padded_size * ww.padded_size)
                             : static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
}

// Adaptive bin i of out_size over size: [floor(i*size/out), ceil((i+1)*size/out)).
Window adaptive_bin(int64_t i, int64_t size, int64_t out_size) {
  const int64_t start = i * size / out_size;
  const int64_t end = ((i + 1) * size + out_size - 1) / out_size;
  return {start, end, end - start};
}

}  // namespace

void max_pool2d_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t planes = g.N * g.C, HW = g.H * g.W, P = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * P > kPoolParallelMin)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* xp = x + plane * HW;
    float* yp = y + plane * P;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
        const int64_t best = window_argmax(xp, g.W, wh, ww);
        yp[oh * g.OW + ow] = best >= 0 ? xp[best] : -std::numeric_limits<float>::infinity();
      }
    }
  }
}

// Recomputes the argmax from x (no saved indices) and routes dy there.
void max_pool2d_backward(const PoolGeom& g, const float* x, const float* dy, float* dx) {
  const int64_t planes = g.N * g.C, HW = g.H * g.W, P = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * P > kPoolParallelMin)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* xp = x + plane * HW;
    const float* dyp = dy + plane * P;
    float* dxp = dx + plane * HW;
    std::fill(dxp, dxp + HW, 0.0f);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
        const int64_t best = window_argmax(xp, g.W, wh, ww);
        if (best >= 0) dxp[best] += dyp[oh * g.OW + ow];
      }
    }
  }
}

void avg_pool2d_forward(const PoolGeom& g, const float* x, float* y) {
  const int64_t planes = g.N * g.C, HW = g.H * g.W, P = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * P > kPoolParallelMin)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* xp = x + plane * HW;
    float* yp = y + plane * P;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
        float total = 0.0f;
        for (int64_t ih = wh.start; ih < wh.end; ++ih)
          for (int64_t iw = ww.start; iw < ww.end; ++iw) total += xp[ih * g.W + iw];
        yp[oh * g.OW + ow] = total / avg_divisor(g, wh, ww);
      }
    }
  }
}

void avg_pool2d_backward(const PoolGeom& g, const float* dy, float* dx) {
  const int64_t planes = g.N * g.C, HW = g.H * g.W, P = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (planes * P > kPoolParallelMin)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* dyp = dy + plane * P;
    float* dxp = dx + plane * HW;
    std::fill(dxp, dxp + HW, 0.0f);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const Window wh = window(oh, g.KH, g.stride_h, g.pad_h, g.H);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Window ww = window(ow, g.KW, g.stride_w, g.pad_w, g.W);
        const float share = dyp[oh * g.OW + ow] / avg_divisor(g, wh, ww);
        for (int64_t ih = wh.start; ih < wh.end; ++ih)
          for (int64_t iw = ww.start; iw < ww.end; ++iw) dxp[ih * g.W + iw] += share;
      }
    }
  }
}

void adaptive_avg_pool2d_forward(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 const float* x, float* y) {
#pragma omp parallel for schedule(static) if (NC * H * W > kPoolParallelMin)
  for (int64_t plane = 0; plane < NC; ++plane) {
    const float* xp = x + plane * H * W;
    float* yp = y + plane * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Window wh = adaptive_bin(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Window ww = adaptive_bin(ow, W, OW);
        float total = 0.0f;
        for (int64_t ih = wh.start; ih < wh.end; ++ih)
          for (int64_t iw = ww.start; iw < ww.end; ++iw) total += xp[ih * W + iw];
        yp[oh * OW + ow] = total / static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
      }
    }
  }
}

void adaptive_avg_pool2d_backward(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                  const float* dy, float* dx) {
#pragma omp parallel for schedule(static) if (NC * H * W > kPoolParallelMin)
  for (int64_t plane = 0; plane < NC; ++plane) {
    const float* dyp = dy + plane * OH * OW;
    float* dxp = dx + plane * H * W;
    std::fill(dxp, dxp + H * W, 0.0f);
    for (int64_t oh = 0; oh < OH; ++oh) {
      const Window wh = adaptive_bin(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Window ww = adaptive_bin(ow, W, OW);
        const float share =
            dyp[oh * OW + ow] / static_cast<float>((wh.end - wh.start) * (ww.end - ww.start));
        for (int64_t ih = wh.start; ih < wh.end; ++ih)
          for (int64_t iw = ww.start; iw < ww.end; ++iw) dxp[ih * W + iw] += share;
      }
    }
  }
}

}  // namespace pk::cpu
