// Normalization CPU kernels: layer norm over the last dim, batch statistics
// per channel, batch norm apply and its backward (train and eval mode).
//
// Statistics accumulate in double: a float running sum over a large plane
// loses digits, and a variance from E[x^2] - E[x]^2 cancels catastrophically
// when the mean is large, so variances are always a second pass over x - mean.
#include <omp.h>

#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "kernels/cpu/double_sums.h"
#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

using ConstArray = Eigen::Map<const Eigen::ArrayXf>;
using Array = Eigen::Map<Eigen::ArrayXf>;

}  // namespace

void layer_norm_forward(int64_t R, int64_t D, float eps, const float* x, const float* w,
                        const float* b, float* y, float* mean, float* rstd) {
#pragma omp parallel for if (R * D > kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    ConstArray xr(x + r * D, D);
    const double mu = sum_in_double(x + r * D, D) / static_cast<double>(D);
    const double var = sum_in_double(x + r * D, D, [mu](float v) {
                         const double deviation = static_cast<double>(v) - mu;
                         return deviation * deviation;
                       }) /
                       static_cast<double>(D);
    const float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
    Array yr(y + r * D, D);
    yr = (xr - static_cast<float>(mu)) * rs;
    if (w) yr *= ConstArray(w, D);
    if (b) yr += ConstArray(b, D);
    mean[r] = static_cast<float>(mu);
    rstd[r] = rs;
  }
}

// With xhat = (x - mean) * rstd and g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dw = sum over rows of dy * xhat, db = sum over rows of dy.
void layer_norm_backward(int64_t R, int64_t D, const float* x, const float* w, const float* mean,
                         const float* rstd, const float* dy, float* dx, float* dw, float* db) {
  const bool need_params = dw || db;
  const int threads = omp_get_max_threads();
  // Per-thread partial dw and db, summed after the parallel loop.
  std::vector<double> partial(need_params ? 2 * static_cast<size_t>(threads * D) : 0, 0.0);
#pragma omp parallel if (R * D > kParallelMin)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    Eigen::ArrayXf xhat(D), g(D);
#pragma omp for
    for (int64_t r = 0; r < R; ++r) {
      ConstArray dyr(dy + r * D, D);
      xhat = (ConstArray(x + r * D, D) - mean[r]) * rstd[r];
      if (need_params) {
        Eigen::Map<Eigen::ArrayXd> part_dw(partial.data() + 2 * t * D, D);
        Eigen::Map<Eigen::ArrayXd> part_db(partial.data() + (2 * t + 1) * D, D);
        part_dw += (dyr * xhat).cast<double>();
        part_db += dyr.cast<double>();
      }
      if (dx) {
        if (w) g = dyr * ConstArray(w, D);
        else g = dyr;
        const float g_mean = g.mean();
        const float gx_mean = (g * xhat).mean();
        Array(dx + r * D, D) = rstd[r] * (g - g_mean - xhat * gx_mean);
      }
    }
  }
  if (!need_params) return;
  Eigen::ArrayXd sum_dw = Eigen::ArrayXd::Zero(D), sum_db = Eigen::ArrayXd::Zero(D);
  for (size_t t = 0; t < static_cast<size_t>(threads); ++t) {
    sum_dw += Eigen::Map<Eigen::ArrayXd>(partial.data() + 2 * t * D, D);
    sum_db += Eigen::Map<Eigen::ArrayXd>(partial.data() + (2 * t + 1) * D, D);
  }
  if (dw) Array(dw, D) = sum_dw.cast<float>();
  if (db) Array(db, D) = sum_db.cast<float>();
}

// Two passes (sum, then squared deviations), each parallel over the N*C
// planes so that few channels with large planes still use every thread.
void channel_stats(int64_t N, int64_t C, int64_t HW, const float* x, float* mean, float* var) {
  const int64_t planes = N * C;
  const double count = static_cast<double>(N * HW);
  std::vector<double> plane_sum(planes);
  Eigen::ArrayXd channel_mean = Eigen::ArrayXd::Zero(C);
#pragma omp parallel for if (planes * HW > kParallelMin)
  for (int64_t p = 0; p < planes; ++p)
    plane_sum[p] = ConstArray(x + p * HW, HW).cast<double>().sum();
  for (int64_t p = 0; p < planes; ++p) channel_mean[p % C] += plane_sum[p];
  channel_mean /= count;
#pragma omp parallel for if (planes * HW > kParallelMin)
  for (int64_t p = 0; p < planes; ++p)
    plane_sum[p] = (ConstArray(x + p * HW, HW).cast<double>() - channel_mean[p % C]).square().sum();
  Eigen::ArrayXd channel_var = Eigen::ArrayXd::Zero(C);
  for (int64_t p = 0; p < planes; ++p) channel_var[p % C] += plane_sum[p];
  Array(mean, C) = channel_mean.cast<float>();
  Array(var, C) = (channel_var / count).cast<float>();
}

void batch_norm_apply(int64_t N, int64_t C, int64_t HW, const float* x, const float* mean,
                      const float* rstd, const float* w, const float* b, float* y) {
#pragma omp parallel for if (N * C * HW > kParallelMin)
  for (int64_t p = 0; p < N * C; ++p) {
    const int64_t c = p % C;
    const float scale = rstd[c] * (w ? w[c] : 1.0f);
    const float shift = b ? b[c] : 0.0f;
    // Subtract the mean before scaling: x * scale - mean * scale would cancel
    // digits when |mean| is much larger than the spread.
    Array(y + p * HW, HW) = (ConstArray(x + p * HW, HW) - mean[c]) * scale + shift;
  }
}

// Per channel, with n = N*HW, sdy = sum(dy) and sdyx = sum(dy * (x - mean)):
//   dw = sdyx * rstd, db = sdy;
//   train (batch_stats): dx = w*rstd * (dy - sdy/n - (x - mean) * sdyx*rstd^2/n);
//   eval: dx = w*rstd * dy.
void batch_norm_backward(int64_t N, int64_t C, int64_t HW, bool batch_stats, const float* x,
                         const float* mean, const float* rstd, const float* w, const float* dy,
                         float* dx, float* dw, float* db) {
  const int64_t planes = N * C;
  const bool parallel = planes * HW > kParallelMin;
  Eigen::ArrayXd sdy = Eigen::ArrayXd::Zero(C), sdyx = Eigen::ArrayXd::Zero(C);
  if (dw || db || (dx && batch_stats)) {
    std::vector<double> plane_dy(planes), plane_dyx(planes);
#pragma omp parallel for if (parallel)
    for (int64_t p = 0; p < planes; ++p) {
      ConstArray dyp(dy + p * HW, HW);
      plane_dy[p] = dyp.cast<double>().sum();
      plane_dyx[p] = (dyp * (ConstArray(x + p * HW, HW) - mean[p % C])).cast<double>().sum();
    }
    for (int64_t p = 0; p < planes; ++p) {
      sdy[p % C] += plane_dy[p];
      sdyx[p % C] += plane_dyx[p];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    if (dw) dw[c] = static_cast<float>(sdyx[c] * rstd[c]);
    if (db) db[c] = static_cast<float>(sdy[c]);
  }
  if (!dx) return;
  const double n = static_cast<double>(N * HW);
#pragma omp parallel for if (parallel)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % C;
    const float scale = rstd[c] * (w ? w[c] : 1.0f);
    Array dxp(dx + p * HW, HW);
    ConstArray dyp(dy + p * HW, HW);
    if (batch_stats) {
      const float dy_mean = static_cast<float>(sdy[c] / n);
      const float x_coef = static_cast<float>(sdyx[c] * rstd[c] * rstd[c] / n);
      dxp = scale * (dyp - dy_mean - (ConstArray(x + p * HW, HW) - mean[c]) * x_coef);
    } else {
      dxp = scale * dyp;
    }
  }
}

}  // namespace pk::cpu
