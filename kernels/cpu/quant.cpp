// Quantization kernels: fused fake quantization (uniform affine, STE) and
// AdaRound, each one pass forward and one pass backward. Tensors are viewed
// as [outer, C, inner] around the quantization axis; C == 1 is per-tensor.
// The statistics of quantizer initialization are in quant_init.cpp.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/cpu/double_sums.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/cpu/quant_views.h"
#include "kernels/cpu/vector_avx512.h"
#include "kernels/kernels.h"

namespace pk::cpu {

using namespace quant_views;

namespace {

constexpr float kGamma = -0.1f, kZeta = 1.1f;  // AdaRound's rectified sigmoid stretch
// sigmoid(alpha) of a chunk.
ArrayChunk sigmoid(const float* alpha, int64_t n) {
  return (1.0f + (-ConstArrayMap(alpha, n)).exp()).inverse();
}

// The rectified sigmoid before clamping to [0, 1].
ArrayChunk stretched(const ArrayChunk& s) { return s * (kZeta - kGamma) + kGamma; }

}  // namespace

void fake_quant_forward(const AxisGeom& g, const float* x, const float* scale,
                        const float* zero_point, float qmax, float* y) {
  for_channel_spans(g, [&](int64_t c, int64_t begin, int64_t end) {
    const float d = scale[c], z = zero_point[c];
#if defined(PACKPTQ_WITH_AVX512)
    if (active_isa() == Isa::Avx512)
      return fake_quant_forward_avx512(end - begin, x + begin, d, z, qmax, y + begin);
#endif
    for (int64_t i = begin; i < end; ++i) {
      float level = std::min(qmax, std::max(0.0f, std::nearbyint(x[i] / d) + z));
      y[i] = (level - z) * d;
    }
  });
}

void fake_quant_backward(const AxisGeom& g, const float* x, const float* scale,
                         const float* zero_point, float qmax, const float* dy, float* dx,
                         float* dscale) {
  const int nt = omp_get_max_threads();
  std::vector<double> partial(dscale ? static_cast<size_t>(nt) * g.dim : 0, 0.0);
  for_channel_spans(g, [&](int64_t c, int64_t begin, int64_t end) {
    const float d = scale[c], z = zero_point[c];
    double* acc =
        dscale ? &partial[static_cast<size_t>(omp_get_thread_num()) * g.dim + c] : nullptr;
#if defined(PACKPTQ_WITH_AVX512)
    if (active_isa() == Isa::Avx512) {
      const double sum = fake_quant_backward_avx512(end - begin, x + begin, d, z, qmax, dy + begin,
                                                    dx ? dx + begin : nullptr);
      if (acc) *acc += sum;
      return;
    }
#endif
    // A chunk's results go to stack arrays first: with no stores that might
    // alias the inputs and only selects, the loop vectorizes.
    float grad_in[kChunk], term[kChunk];
    in_chunks(begin, end, [&](int64_t i, int64_t n) {
      for (int64_t k = 0; k < n; ++k) {
        const float g_out = dy[i + k];
        const float u = x[i + k] / d;
        const float r = std::nearbyint(u);
        const float level = r + z;
        const bool inside = (level >= 0.0f) & (level <= qmax);
        grad_in[k] = inside ? g_out : 0.0f;
        // d q / d D: inside the grid round(x/D) - x/D, outside the clamped level - z.
        term[k] = g_out * (inside ? r - u : (level < 0.0f ? 0.0f : qmax) - z);
      }
      if (dx) std::copy(grad_in, grad_in + n, dx + i);
      if (acc) *acc += sum_in_double(term, n);
    });
  });
  if (!dscale) return;
  for (int64_t c = 0; c < g.dim; ++c) {
    double s = 0.0;
    for (int t = 0; t < nt; ++t) s += partial[static_cast<size_t>(t) * g.dim + c];
    dscale[c] = static_cast<float>(s);
  }
}

void adaround_forward(const AxisGeom& g, const float* w, const float* alpha, const float* scale,
                      const float* zero_point, float qmax, bool hard, float* y) {
  for_channel_spans(g, [&](int64_t c, int64_t begin, int64_t end) {
    const float d = scale[c], z = zero_point[c];
#if defined(PACKPTQ_WITH_AVX512)
    if (active_isa() == Isa::Avx512)
      return adaround_forward_avx512(end - begin, w + begin, alpha + begin, d, z, qmax, hard,
                                     y + begin);
#endif
    in_chunks(begin, end, [&](int64_t i, int64_t n) {
      const ArrayChunk h = hard ? ArrayChunk((ConstArrayMap(alpha + i, n) >= 0.0f).cast<float>())
                                : ArrayChunk(stretched(sigmoid(alpha + i, n)).max(0.0f).min(1.0f));
      const ArrayChunk level = ((ConstArrayMap(w + i, n) / d).floor() + h + z).max(0.0f).min(qmax);
      ArrayMap(y + i, n) = (level - z) * d;
    });
  });
}

void adaround_backward(const AxisGeom& g, const float* w, const float* alpha, const float* scale,
                       const float* zero_point, float qmax, const float* dy, float* dalpha) {
  for_channel_spans(g, [&](int64_t c, int64_t begin, int64_t end) {
    const float d = scale[c], z = zero_point[c];
#if defined(PACKPTQ_WITH_AVX512)
    if (active_isa() == Isa::Avx512)
      return adaround_backward_avx512(end - begin, w + begin, alpha + begin, d, z, qmax, dy + begin,
                                      dalpha + begin);
#endif
    in_chunks(begin, end, [&](int64_t i, int64_t n) {
      const ArrayChunk s = sigmoid(alpha + i, n);
      const ArrayChunk raw = stretched(s);
      const ArrayChunk h = raw.max(0.0f).min(1.0f);
      const ArrayChunk level = (ConstArrayMap(w + i, n) / d).floor() + h + z;
      // Zero outside the grid and where the rectified sigmoid is clamped. A
      // plain loop: Eigen evaluates the comparisons one element at a time.
      const float factor = d * (kZeta - kGamma);
      const float* grad_out = dy + i;
      float* out = dalpha + i;
      for (int64_t e = 0; e < n; ++e) {
        const float on_grid = std::min(std::max(level[e], 0.0f), qmax);
        const float passes = (on_grid == level[e]) & (h[e] == raw[e]) ? 1.0f : 0.0f;
        out[e] = passes * grad_out[e] * factor * s[e] * (1.0f - s[e]);
      }
    });
  });
}

void adaround_regularizer(int64_t n, const float* alpha, float beta, float weight, float* value,
                          float* dalpha) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const float factor = -weight * beta * 2.0f * (kZeta - kGamma);
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n > kParallelMin)
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t i = k * kChunk, len = std::min(kChunk, n - i);
#if defined(PACKPTQ_WITH_AVX512)
    if (active_isa() == Isa::Avx512) {
      total +=
          adaround_regularizer_avx512(len, alpha + i, beta, factor, dalpha ? dalpha + i : nullptr);
      continue;
    }
#endif
    const ArrayChunk s = sigmoid(alpha + i, len);
    const ArrayChunk raw = stretched(s);
    const ArrayChunk h = raw.max(0.0f).min(1.0f);
    const ArrayChunk t = 2.0f * h - 1.0f;
    const ArrayChunk a = t.abs();
    // |2h-1|^(beta-1) through exp and log. a = 0 is clamped to the smallest
    // normal float (its a^beta is 0) and the power kept finite, so that the
    // zero sign(2h-1) masks its gradient for any beta.
    const ArrayChunk pow_m1 = ((beta - 1.0f) * a.max(FLT_MIN).log()).exp().min(FLT_MAX);
    total += static_cast<double>((1.0f - pow_m1 * a).sum());
    if (dalpha) {
      // d/dalpha (1 - |2h-1|^beta) = -beta |2h-1|^(beta-1) sign(2h-1) * 2 h',
      // zero where the rectified sigmoid is clamped. A plain loop: Eigen
      // evaluates the mask and the sign one element at a time.
      float* out = dalpha + i;
      for (int64_t e = 0; e < len; ++e) {
        const float unclamped = h[e] == raw[e] ? 1.0f : 0.0f;
        const float sign = static_cast<float>((t[e] > 0.0f) - (t[e] < 0.0f));
        out[e] = factor * unclamped * pow_m1[e] * sign * s[e] * (1.0f - s[e]);
      }
    }
  }
  *value = static_cast<float>(weight * total);
}

}  // namespace pk::cpu
