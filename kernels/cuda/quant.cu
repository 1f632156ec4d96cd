// Quantization CUDA kernels: fused fake quantization (uniform affine, STE)
// and AdaRound, one pass forward and one pass backward, plus the statistics
// quantizer initialization needs. Tensors are viewed as [outer, C, inner]
// around the quantization axis; C == 1 is per-tensor. The formulas mirror
// kernels/cpu/quant.cpp term by term (rintf rounds half to even like
// std::nearbyint); per-channel sums accumulate in double.
#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

constexpr float kGamma = -0.1f, kZeta = 1.1f;  // AdaRound's rectified sigmoid stretch
constexpr int64_t kTargetBlocks = 1024;

__device__ inline int64_t channel_of(int64_t i, const AxisGeom& g) { return (i / g.inner) % g.dim; }

__device__ inline float sigmoid(float alpha) { return 1.0f / (1.0f + expf(-alpha)); }

// s * (zeta - gamma) + gamma before clamping to [0, 1]. The _rn intrinsics
// keep the compiler from fusing a multiply-add here and in
// fake_quant_value, so both round like the CPU reference.
__device__ inline float stretched(float s) {
  return __fadd_rn(__fmul_rn(s, kZeta - kGamma), kGamma);
}

__device__ inline float clamp01(float v) { return fminf(1.0f, fmaxf(0.0f, v)); }

__device__ inline float fake_quant_value(float x, float d, float z, float qmax) {
  const float level = fminf(qmax, fmaxf(0.0f, rintf(x / d) + z));
  return __fmul_rn(level - z, d);
}

// Straight-through gradient of fake quantization: whether x maps inside
// the grid (dx passes), and d q / d D (round(x/D) - x/D inside the grid,
// the clamped level - z outside).
__device__ inline bool fake_quant_grad(float x, float d, float z, float qmax, float& dq_dscale) {
  const float u = x / d;
  const float r = rintf(u);
  const float level = r + z;
  const bool inside = level >= 0.0f && level <= qmax;
  dq_dscale = inside ? r - u : (level < 0.0f ? 0.0f : qmax) - z;
  return inside;
}

__global__ void fake_quant_forward_kernel(AxisGeom g, const float* x, const float* scale,
                                          const float* zero_point, float qmax, float* y,
                                          int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t c = channel_of(i, g);
    y[i] = fake_quant_value(x[i], scale[c], zero_point[c], qmax);
  }
}

__global__ void fake_quant_dx_kernel(AxisGeom g, const float* x, const float* scale,
                                     const float* zero_point, float qmax, const float* dy,
                                     float* dx, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t c = channel_of(i, g);
    float unused;
    dx[i] = fake_quant_grad(x[i], scale[c], zero_point[c], qmax, unused) ? dy[i] : 0.0f;
  }
}

// Grid (C, splits): dx (nullable) of the block's elements and its channel's
// partial dscale, partial[split * C + c].
__global__ void fake_quant_dscale_kernel(AxisGeom g, const float* x, const float* scale,
                                         const float* zero_point, float qmax, const float* dy,
                                         float* dx, double* partial) {
  const int64_t c = blockIdx.x;
  int64_t begin, end;
  split_span(g.outer * g.inner, blockIdx.y, gridDim.y, begin, end);
  const float d = scale[c], z = zero_point[c];
  double acc = 0.0;
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) {
    const int64_t i = channel_element(k, c, g.dim, g.inner);
    float dq_dscale;
    const bool inside = fake_quant_grad(x[i], d, z, qmax, dq_dscale);
    if (dx) dx[i] = inside ? dy[i] : 0.0f;
    acc += dy[i] * dq_dscale;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.y * g.dim + c] = acc;
}

__global__ void adaround_forward_kernel(AxisGeom g, const float* w, const float* alpha,
                                        const float* scale, const float* zero_point, float qmax,
                                        bool hard, float* y, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t c = channel_of(i, g);
    const float d = scale[c], z = zero_point[c];
    const float h = hard ? (alpha[i] >= 0.0f ? 1.0f : 0.0f) : clamp01(stretched(sigmoid(alpha[i])));
    const float level = fminf(qmax, fmaxf(0.0f, floorf(w[i] / d) + h + z));
    y[i] = (level - z) * d;
  }
}

__global__ void adaround_backward_kernel(AxisGeom g, const float* w, const float* alpha,
                                         const float* scale, const float* zero_point, float qmax,
                                         const float* dy, float* dalpha, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t c = channel_of(i, g);
    const float d = scale[c], z = zero_point[c];
    const float s = sigmoid(alpha[i]);
    const float raw = stretched(s);
    const float level = floorf(w[i] / d) + clamp01(raw) + z;
    const bool passes = level >= 0.0f && level <= qmax && raw >= 0.0f && raw <= 1.0f;
    dalpha[i] = passes ? dy[i] * d * (kZeta - kGamma) * s * (1.0f - s) : 0.0f;
  }
}

// Per block: partial[blockIdx.x] = sum of 1 - |2h - 1|^beta over the block's
// elements; dalpha (nullable) element-wise.
__global__ void adaround_regularizer_kernel(int64_t n, const float* alpha, float beta, float weight,
                                            double* partial, float* dalpha) {
  double acc = 0.0;
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float s = sigmoid(alpha[i]);
    const float raw = stretched(s);
    const float t = 2.0f * clamp01(raw) - 1.0f, a = fabsf(t);
    acc += 1.0f - powf(a, beta);
    if (dalpha) {
      const bool passes = raw >= 0.0f && raw <= 1.0f && a > 0.0f;
      // d/dalpha (1 - |2h-1|^beta) = -beta |2h-1|^(beta-1) sign(2h-1) * 2 h'
      dalpha[i] = passes ? -weight * beta * powf(a, beta - 1.0f) * (t > 0 ? 1.0f : -1.0f) * 2.0f *
                               (kZeta - kGamma) * s * (1.0f - s)
                         : 0.0f;
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: value[0] = weight * sum of the partials.
__global__ void weighted_total_kernel(const double* partial, int64_t count, float weight,
                                      float* value) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) value[0] = static_cast<float>(weight * acc);
}

__device__ inline void block_min_max(float& lo, float& hi) {
  __shared__ float warp_lo[kThreads / kWarp], warp_hi[kThreads / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, offset));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, offset));
  }
  if (lane == 0) {
    warp_lo[warp] = lo;
    warp_hi[warp] = hi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < kThreads / kWarp; ++k) {
      lo = fminf(lo, warp_lo[k]);
      hi = fmaxf(hi, warp_hi[k]);
    }
  }
}

// Grid (C, splits): min and max over a split of channel c (NaN ignored, as
// std::min / std::max with the running value first).
__global__ void channel_minmax_kernel(AxisGeom g, const float* x, float* lo_partial,
                                      float* hi_partial) {
  const int64_t c = blockIdx.x;
  int64_t begin, end;
  split_span(g.outer * g.inner, blockIdx.y, gridDim.y, begin, end);
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) {
    const float v = x[channel_element(k, c, g.dim, g.inner)];
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  block_min_max(lo, hi);
  if (threadIdx.x != 0) return;
  lo_partial[blockIdx.y * g.dim + c] = lo;
  hi_partial[blockIdx.y * g.dim + c] = hi;
}

__global__ void finish_minmax_kernel(const float* lo_partial, const float* hi_partial,
                                     int64_t splits, int64_t C, float* mn, float* mx) {
  for (int64_t c = global_index(); c < C; c += grid_stride()) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t s = 0; s < splits; ++s) {
      lo = fminf(lo, lo_partial[s * C + c]);
      hi = fmaxf(hi, hi_partial[s * C + c]);
    }
    mn[c] = lo;
    mx[c] = hi;
  }
}

// Grid (C, splits): partial[(split * C + c) * K + k] = sum over a split of
// channel c of |x - q_k(x)|^p, q_k quantizing to the range [lo, hi] shrunk
// by (1 - 0.01 k); 0 for a constant channel, as on the CPU. Powers in double
// (the CPU rechecks its near-best candidates in double; here FP64 is cheap).
__global__ void range_scores_kernel(AxisGeom g, const float* x, const float* lo, const float* hi,
                                    int64_t K, float qmax, float p, double* partial) {
  const int64_t c = blockIdx.x;
  int64_t begin, end;
  split_span(g.outer * g.inner, blockIdx.y, gridDim.y, begin, end);
  double* out = partial + (blockIdx.y * g.dim + c) * K;
  for (int64_t k = 0; k < K; ++k) {
    const float shrink = static_cast<float>(1.0 - 0.01 * static_cast<double>(k));
    // __fmul_rn: products rounded before the subtraction, never fused (as in
    // kernels/cpu/unfused_float.cpp).
    const float new_max = __fmul_rn(hi[c], shrink), new_min = __fmul_rn(lo[c], shrink);
    const float d = (new_max - new_min) / qmax;
    if (!(d > 0.0f)) {  // uniform over the block: every thread skips together
      if (threadIdx.x == 0) out[k] = 0.0;
      continue;
    }
    const float z = rintf(-new_min / d);
    double acc = 0.0;
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
      const float v = x[channel_element(j, c, g.dim, g.inner)];
      const float err = fabsf(v - fake_quant_value(v, d, z, qmax));
      acc += pow(static_cast<double>(err), static_cast<double>(p));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[k] = acc;
  }
}

int64_t channel_splits(const AxisGeom& g, int64_t min_items) {
  return reduction_splits(g.dim, g.outer * g.inner, kTargetBlocks, min_items);
}

dim3 channel_grid(const AxisGeom& g, int64_t splits) {
  return dim3(static_cast<unsigned>(g.dim), static_cast<unsigned>(splits));
}

}  // namespace

void fake_quant_forward(const AxisGeom& g, const float* x, const float* scale,
                        const float* zero_point, float qmax, float* y) {
  const int64_t n = g.outer * g.dim * g.inner;
  if (n <= 0) return;
  fake_quant_forward_kernel<<<grid_for(n), kThreads>>>(g, x, scale, zero_point, qmax, y, n);
  check_launch("fake_quant_forward_kernel");
}

void fake_quant_backward(const AxisGeom& g, const float* x, const float* scale,
                         const float* zero_point, float qmax, const float* dy, float* dx,
                         float* dscale) {
  const int64_t n = g.outer * g.dim * g.inner;
  if (g.dim <= 0) return;
  if (!dscale) {
    if (!dx || n <= 0) return;
    fake_quant_dx_kernel<<<grid_for(n), kThreads>>>(g, x, scale, zero_point, qmax, dy, dx, n);
    check_launch("fake_quant_dx_kernel");
    return;
  }
  const int64_t splits = channel_splits(g, 16 * kThreads);
  Scratch partial(static_cast<size_t>(splits * g.dim) * sizeof(double));
  fake_quant_dscale_kernel<<<channel_grid(g, splits), kThreads>>>(g, x, scale, zero_point, qmax, dy,
                                                                  dx, partial.as<double>());
  check_launch("fake_quant_dscale_kernel");
  finish_split_sums(partial.as<double>(), splits, g.dim, 1.0, dscale);
}

void adaround_forward(const AxisGeom& g, const float* w, const float* alpha, const float* scale,
                      const float* zero_point, float qmax, bool hard, float* y) {
  const int64_t n = g.outer * g.dim * g.inner;
  if (n <= 0) return;
  adaround_forward_kernel<<<grid_for(n), kThreads>>>(g, w, alpha, scale, zero_point, qmax, hard, y,
                                                     n);
  check_launch("adaround_forward_kernel");
}

void adaround_backward(const AxisGeom& g, const float* w, const float* alpha, const float* scale,
                       const float* zero_point, float qmax, const float* dy, float* dalpha) {
  const int64_t n = g.outer * g.dim * g.inner;
  if (n <= 0) return;
  adaround_backward_kernel<<<grid_for(n), kThreads>>>(g, w, alpha, scale, zero_point, qmax, dy,
                                                      dalpha, n);
  check_launch("adaround_backward_kernel");
}

// value is a device pointer: the loss stays on the device until read.
void adaround_regularizer(int64_t n, const float* alpha, float beta, float weight, float* value,
                          float* dalpha) {
  const unsigned blocks = grid_for(n);
  Scratch partial(blocks * sizeof(double));
  adaround_regularizer_kernel<<<blocks, kThreads>>>(n, alpha, beta, weight, partial.as<double>(),
                                                    dalpha);
  check_launch("adaround_regularizer_kernel");
  weighted_total_kernel<<<1, kThreads>>>(partial.as<double>(), blocks, weight, value);
  check_launch("weighted_total_kernel");
}

void channel_minmax(const AxisGeom& g, const float* x, float* mn, float* mx) {
  if (g.dim <= 0) return;
  const int64_t splits = channel_splits(g, 16 * kThreads);
  Scratch lo(static_cast<size_t>(splits * g.dim) * sizeof(float));
  Scratch hi(static_cast<size_t>(splits * g.dim) * sizeof(float));
  channel_minmax_kernel<<<channel_grid(g, splits), kThreads>>>(g, x, lo.as<float>(),
                                                               hi.as<float>());
  check_launch("channel_minmax_kernel");
  finish_minmax_kernel<<<grid_for(g.dim), kThreads>>>(lo.as<float>(), hi.as<float>(), splits, g.dim,
                                                      mn, mx);
  check_launch("finish_minmax_kernel");
}

// scores[c * K + k] = mean over channel c of |x - q_k(x)|^p.
void quant_range_scores(const AxisGeom& g, const float* x, const float* lo, const float* hi,
                        int64_t n_candidates, float qmax, float p, double* scores) {
  if (g.dim <= 0 || n_candidates <= 0) return;
  const int64_t K = n_candidates;
  const int64_t splits = channel_splits(g, 8 * kThreads);
  Scratch partial(static_cast<size_t>(splits * g.dim * K) * sizeof(double));
  range_scores_kernel<<<channel_grid(g, splits), kThreads>>>(g, x, lo, hi, K, qmax, p,
                                                             partial.as<double>());
  check_launch("range_scores_kernel");
  finish_split_sums(partial.as<double>(), splits, g.dim * K, static_cast<double>(g.outer * g.inner),
                    scores);
}

}  // namespace pk::cuda
