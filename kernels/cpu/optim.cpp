// Optimizer update kernels, element-wise in place.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/cpu/vector_avx512.h"
#include "kernels/kernels.h"

namespace pk::cpu {

// Adam as torch.optim.Adam (L2 weight decay added to the gradient, bias
// correction with the 1-based step count).
void adam_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr,
                 float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const float bc1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float bc2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  const float step_size = lr / bc1;
  const float bc2_sqrt = std::sqrt(bc2);
#if defined(PACKPTQ_WITH_AVX512)
  if (active_isa() == Isa::Avx512) {
    // Spans of whole vectors, one per thread.
    const int64_t spans = n > kParallelMin ? omp_get_max_threads() : 1;
    const int64_t per_span = ((n + spans - 1) / spans + 15) / 16 * 16;
#pragma omp parallel for schedule(static) if (spans > 1)
    for (int64_t t = 0; t < spans; ++t) {
      const int64_t begin = std::min(n, t * per_span), len = std::min(n, begin + per_span) - begin;
      adam_update_avx512(len, param + begin, grad + begin, m + begin, v + begin, step_size,
                         bc2_sqrt, beta1, beta2, eps, weight_decay);
    }
    return;
  }
#endif
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i] + weight_decay * param[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    param[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
  }
}

// SGD with momentum as torch.optim.SGD (dampening 0, no Nesterov): the
// buffer starts as the first gradient.
void sgd_update(int64_t n, float* param, const float* grad, float* momentum_buf, float lr,
                float momentum, float weight_decay, bool first_step) {
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i] + weight_decay * param[i];
    if (momentum != 0.0f) {
      momentum_buf[i] = first_step ? g : momentum * momentum_buf[i] + g;
      g = momentum_buf[i];
    }
    param[i] -= lr * g;
  }
}

}  // namespace pk::cpu
