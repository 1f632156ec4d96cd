// Normalization CUDA kernels: layer norm over the last dim (a warp per row),
// batch statistics per channel, batch norm apply and its backward.
//
// As on the CPU, statistics accumulate in double and variances are a second
// pass over x - mean, never E[x^2] - E[x]^2. Per-channel sums run as one
// block per (channel, split) followed by a pass over the splits.
#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

constexpr int64_t kTargetBlocks = 1024;

__global__ void layer_norm_forward_kernel(int64_t R, int64_t D, float eps, const float* x,
                                          const float* w, const float* b, float* y, float* mean,
                                          float* rstd) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = global_warp(); r < R; r += warp_stride()) {
    const float* xr = x + r * D;
    double total = 0.0;
    for (int64_t d = lane; d < D; d += kWarp) total += xr[d];
    const double mu = warp_sum(total) / static_cast<double>(D);
    double squares = 0.0;
    for (int64_t d = lane; d < D; d += kWarp) {
      const double t = xr[d] - mu;
      squares += t * t;
    }
    const double var = warp_sum(squares) / static_cast<double>(D);
    const float rs = static_cast<float>(1.0 / sqrt(var + eps));
    const float mu_f = static_cast<float>(mu);
    float* yr = y + r * D;
    for (int64_t d = lane; d < D; d += kWarp) {
      float v = (xr[d] - mu_f) * rs;
      if (w) v *= w[d];
      if (b) v += b[d];
      yr[d] = v;
    }
    if (lane == 0) {
      mean[r] = mu_f;
      rstd[r] = rs;
    }
  }
}

// With xhat = (x - mean) * rstd and g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
__global__ void layer_norm_dx_kernel(int64_t R, int64_t D, const float* x, const float* w,
                                     const float* mean, const float* rstd, const float* dy,
                                     float* dx) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = global_warp(); r < R; r += warp_stride()) {
    const float* xr = x + r * D;
    const float* dyr = dy + r * D;
    const float mu = mean[r], rs = rstd[r];
    double g_total = 0.0, gx_total = 0.0;
    for (int64_t d = lane; d < D; d += kWarp) {
      const float g = w ? dyr[d] * w[d] : dyr[d];
      g_total += g;
      gx_total += g * ((xr[d] - mu) * rs);
    }
    const float g_mean = static_cast<float>(warp_sum(g_total) / static_cast<double>(D));
    const float gx_mean = static_cast<float>(warp_sum(gx_total) / static_cast<double>(D));
    float* dxr = dx + r * D;
    for (int64_t d = lane; d < D; d += kWarp) {
      const float g = w ? dyr[d] * w[d] : dyr[d];
      dxr[d] = rs * (g - g_mean - ((xr[d] - mu) * rs) * gx_mean);
    }
  }
}

// Column sums over a split of the rows: dw partial = sum dy * xhat, db
// partial = sum dy, each [splits, D].
__global__ void layer_norm_params_kernel(int64_t R, int64_t D, const float* x, const float* mean,
                                         const float* rstd, const float* dy, double* dw_partial,
                                         double* db_partial) {
  const int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  int64_t begin, end;
  split_span(R, blockIdx.y, gridDim.y, begin, end);
  double dw_acc = 0.0, db_acc = 0.0;
  for (int64_t r = begin; r < end; ++r) {
    const float g = dy[r * D + d];
    dw_acc += g * ((x[r * D + d] - mean[r]) * rstd[r]);
    db_acc += g;
  }
  dw_partial[blockIdx.y * D + d] = dw_acc;
  db_partial[blockIdx.y * D + d] = db_acc;
}

// partial[split * C + c] = sum over a split of channel c of (x - center[c])^power,
// power 1 or 2, center null for 0. Grid (C, splits).
__global__ void channel_moment_kernel(int64_t N, int64_t C, int64_t HW, const float* x,
                                      const double* center, int power, double* partial) {
  const int64_t c = blockIdx.x;
  int64_t begin, end;
  split_span(N * HW, blockIdx.y, gridDim.y, begin, end);
  const double shift = center ? center[c] : 0.0;
  double acc = 0.0;
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) {
    const double t = x[channel_element(k, c, C, HW)] - shift;
    acc += power == 2 ? t * t : t;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.y * C + c] = acc;
}

// Per channel: mean_d (double) and mean_f (float) of the split sums over count.
__global__ void finish_mean_kernel(const double* partial, int64_t splits, int64_t C, double count,
                                   double* mean_d, float* mean_f) {
  for (int64_t c = global_index(); c < C; c += grid_stride()) {
    double total = 0.0;
    for (int64_t s = 0; s < splits; ++s) total += partial[s * C + c];
    mean_d[c] = total / count;
    mean_f[c] = static_cast<float>(total / count);
  }
}

__global__ void batch_norm_apply_kernel(int64_t C, int64_t HW, const float* x, const float* mean,
                                        const float* rstd, const float* w, const float* b, float* y,
                                        int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t c = (i / HW) % C;
    const float scale = rstd[c] * (w ? w[c] : 1.0f);
    const float shift = b ? b[c] : 0.0f;
    y[i] = (x[i] - mean[c]) * scale + shift;  // mean first: no cancellation
  }
}

// partial[(split * C + c) * 2 + {0, 1}] = sums over a split of channel c of
// dy and dy * (x - mean). Grid (C, splits).
__global__ void batch_norm_grad_sums_kernel(int64_t N, int64_t C, int64_t HW, const float* x,
                                            const float* mean, const float* dy, double* partial) {
  const int64_t c = blockIdx.x;
  int64_t begin, end;
  split_span(N * HW, blockIdx.y, gridDim.y, begin, end);
  double dy_acc = 0.0, dyx_acc = 0.0;
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) {
    const int64_t i = channel_element(k, c, C, HW);
    dy_acc += dy[i];
    dyx_acc += dy[i] * (x[i] - mean[c]);
  }
  dy_acc = block_sum(dy_acc);
  dyx_acc = block_sum(dyx_acc);
  if (threadIdx.x != 0) return;
  partial[(blockIdx.y * C + c) * 2] = dy_acc;
  partial[(blockIdx.y * C + c) * 2 + 1] = dyx_acc;
}

// sdy, sdyx per channel from the split sums; dw = sdyx * rstd, db = sdy.
__global__ void batch_norm_finish_sums_kernel(const double* partial, int64_t splits, int64_t C,
                                              const float* rstd, double* sdy, double* sdyx,
                                              float* dw, float* db) {
  for (int64_t c = global_index(); c < C; c += grid_stride()) {
    double dy_total = 0.0, dyx_total = 0.0;
    for (int64_t s = 0; s < splits; ++s) {
      dy_total += partial[(s * C + c) * 2];
      dyx_total += partial[(s * C + c) * 2 + 1];
    }
    sdy[c] = dy_total;
    sdyx[c] = dyx_total;
    if (dw) dw[c] = static_cast<float>(dyx_total * rstd[c]);
    if (db) db[c] = static_cast<float>(dy_total);
  }
}

// train: dx = w*rstd * (dy - sdy/n - (x - mean) * sdyx*rstd^2/n); eval: dx = w*rstd * dy.
__global__ void batch_norm_dx_kernel(int64_t C, int64_t HW, bool batch_stats, double count,
                                     const float* x, const float* mean, const float* rstd,
                                     const float* w, const float* dy, const double* sdy,
                                     const double* sdyx, float* dx, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const int64_t c = (i / HW) % C;
    const float scale = rstd[c] * (w ? w[c] : 1.0f);
    if (batch_stats) {
      const float dy_mean = static_cast<float>(sdy[c] / count);
      const float x_coef = static_cast<float>(sdyx[c] * rstd[c] * rstd[c] / count);
      dx[i] = scale * (dy[i] - dy_mean - (x[i] - mean[c]) * x_coef);
    } else {
      dx[i] = scale * dy[i];
    }
  }
}

}  // namespace

void layer_norm_forward(int64_t R, int64_t D, float eps, const float* x, const float* w,
                        const float* b, float* y, float* mean, float* rstd) {
  if (R <= 0) return;
  layer_norm_forward_kernel<<<row_blocks(R), kThreads>>>(R, D, eps, x, w, b, y, mean, rstd);
  check_launch("layer_norm_forward_kernel");
}

void layer_norm_backward(int64_t R, int64_t D, const float* x, const float* w, const float* mean,
                         const float* rstd, const float* dy, float* dx, float* dw, float* db) {
  if (dx && R > 0) {
    layer_norm_dx_kernel<<<row_blocks(R), kThreads>>>(R, D, x, w, mean, rstd, dy, dx);
    check_launch("layer_norm_dx_kernel");
  }
  if (!(dw || db) || D <= 0) return;
  const int64_t blocks = (D + kThreads - 1) / kThreads;
  const int64_t splits = reduction_splits(blocks, R, kTargetBlocks, 64);
  Scratch dw_partial(static_cast<size_t>(splits * D) * sizeof(double));
  Scratch db_partial(static_cast<size_t>(splits * D) * sizeof(double));
  layer_norm_params_kernel<<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)),
                             kThreads>>>(R, D, x, mean, rstd, dy, dw_partial.as<double>(),
                                         db_partial.as<double>());
  check_launch("layer_norm_params_kernel");
  if (dw) finish_split_sums(dw_partial.as<double>(), splits, D, 1.0, dw);
  if (db) finish_split_sums(db_partial.as<double>(), splits, D, 1.0, db);
}

void channel_stats(int64_t N, int64_t C, int64_t HW, const float* x, float* mean, float* var) {
  if (C <= 0) return;
  const double count = static_cast<double>(N * HW);
  const int64_t splits = reduction_splits(C, N * HW, kTargetBlocks, 16 * kThreads);
  const dim3 grid(static_cast<unsigned>(C), static_cast<unsigned>(splits));
  Scratch partial(static_cast<size_t>(splits * C) * sizeof(double));
  Scratch mean_d(static_cast<size_t>(C) * sizeof(double));
  channel_moment_kernel<<<grid, kThreads>>>(N, C, HW, x, nullptr, 1, partial.as<double>());
  check_launch("channel_moment_kernel (mean)");
  finish_mean_kernel<<<grid_for(C), kThreads>>>(partial.as<double>(), splits, C, count,
                                                mean_d.as<double>(), mean);
  check_launch("finish_mean_kernel");
  channel_moment_kernel<<<grid, kThreads>>>(N, C, HW, x, mean_d.as<double>(), 2,
                                            partial.as<double>());
  check_launch("channel_moment_kernel (variance)");
  finish_split_sums(partial.as<double>(), splits, C, count, var);
}

void batch_norm_apply(int64_t N, int64_t C, int64_t HW, const float* x, const float* mean,
                      const float* rstd, const float* w, const float* b, float* y) {
  const int64_t n = N * C * HW;
  if (n <= 0) return;
  batch_norm_apply_kernel<<<grid_for(n), kThreads>>>(C, HW, x, mean, rstd, w, b, y, n);
  check_launch("batch_norm_apply_kernel");
}

void batch_norm_backward(int64_t N, int64_t C, int64_t HW, bool batch_stats, const float* x,
                         const float* mean, const float* rstd, const float* w, const float* dy,
                         float* dx, float* dw, float* db) {
  if (C <= 0) return;
  const bool need_sums = dw || db || (dx && batch_stats);
  Scratch sums(static_cast<size_t>(2 * C) * sizeof(double));  // sdy then sdyx
  double* sdy = sums.as<double>();
  double* sdyx = sdy + C;
  if (need_sums) {
    const int64_t splits = reduction_splits(C, N * HW, kTargetBlocks, 16 * kThreads);
    Scratch partial(static_cast<size_t>(2 * splits * C) * sizeof(double));
    batch_norm_grad_sums_kernel<<<dim3(static_cast<unsigned>(C), static_cast<unsigned>(splits)),
                                  kThreads>>>(N, C, HW, x, mean, dy, partial.as<double>());
    check_launch("batch_norm_grad_sums_kernel");
    batch_norm_finish_sums_kernel<<<grid_for(C), kThreads>>>(partial.as<double>(), splits, C, rstd,
                                                             sdy, sdyx, dw, db);
    check_launch("batch_norm_finish_sums_kernel");
  }
  const int64_t n = N * C * HW;
  if (!dx || n <= 0) return;
  batch_norm_dx_kernel<<<grid_for(n), kThreads>>>(C, HW, batch_stats, static_cast<double>(N * HW),
                                                  x, mean, rstd, w, dy, sdy, sdyx, dx, n);
  check_launch("batch_norm_dx_kernel");
}

}  // namespace pk::cuda
