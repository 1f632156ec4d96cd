// Softmax and log-softmax CPU kernels over the last dim D of R rows.
// Each row is shifted by its maximum before exponentiating, so no exp
// overflows whatever the offset of the logits.
#include <Eigen/Core>
#include <cmath>

#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

using ConstArray = Eigen::Map<const Eigen::ArrayXf>;
using Array = Eigen::Map<Eigen::ArrayXf>;

}  // namespace

void softmax_forward(int64_t R, int64_t D, const float* x, float* y) {
#pragma omp parallel for if (R * D > kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    ConstArray xr(x + r * D, D);
    Array yr(y + r * D, D);
    yr = (xr - xr.maxCoeff()).exp();
    yr /= yr.sum();
  }
}

// dx = y * (dy - sum(dy * y))
void softmax_backward(int64_t R, int64_t D, const float* y, const float* dy, float* dx) {
#pragma omp parallel for if (R * D > kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    ConstArray yr(y + r * D, D), dyr(dy + r * D, D);
    Array(dx + r * D, D) = yr * (dyr - (dyr * yr).sum());
  }
}

// y = (x - max) - log(sum(exp(x - max)))
void log_softmax_forward(int64_t R, int64_t D, const float* x, float* y) {
#pragma omp parallel for if (R * D > kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    ConstArray xr(x + r * D, D);
    Array yr(y + r * D, D);
    yr = xr - xr.maxCoeff();
    yr -= std::log(yr.exp().sum());
  }
}

// dx = dy - exp(y) * sum(dy)
void log_softmax_backward(int64_t R, int64_t D, const float* y, const float* dy, float* dx) {
#pragma omp parallel for if (R * D > kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    ConstArray yr(y + r * D, D), dyr(dy + r * D, D);
    Array(dx + r * D, D) = dyr - yr.exp() * dyr.sum();
  }
}

}  // namespace pk::cpu
