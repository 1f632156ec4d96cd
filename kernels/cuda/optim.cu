// Optimizer update kernels on CUDA, element-wise in place, with the rules of
// kernels/cpu/optim.cpp (torch.optim's Adam and SGD).
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

__global__ void adam_kernel(int64_t n, float* param, const float* grad, float* m, float* v,
                            float beta1, float beta2, float eps, float weight_decay,
                            float step_size, float bc2_sqrt) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float g = grad[i] + weight_decay * param[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    param[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
  }
}

__global__ void sgd_kernel(int64_t n, float* param, const float* grad, float* momentum_buf,
                           float lr, float momentum, float weight_decay, bool first_step) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    float g = grad[i] + weight_decay * param[i];
    if (momentum != 0.0f) {
      momentum_buf[i] = first_step ? g : momentum * momentum_buf[i] + g;
      g = momentum_buf[i];
    }
    param[i] -= lr * g;
  }
}

}  // namespace

// Adam with L2 weight decay added to the gradient and bias correction by
// the 1-based step count; the corrections are computed once on the host.
void adam_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr,
                 float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  if (n <= 0) return;
  const float bc1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float bc2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  adam_kernel<<<grid_for(n), kThreads>>>(n, param, grad, m, v, beta1, beta2, eps, weight_decay,
                                         lr / bc1, std::sqrt(bc2));
  check_launch("adam_kernel");
}

// SGD with momentum (dampening 0, no Nesterov): the buffer starts as the
// first gradient.
void sgd_update(int64_t n, float* param, const float* grad, float* momentum_buf, float lr,
                float momentum, float weight_decay, bool first_step) {
  if (n <= 0) return;
  sgd_kernel<<<grid_for(n), kThreads>>>(n, param, grad, momentum_buf, lr, momentum, weight_decay,
                                        first_step);
  check_launch("sgd_kernel");
}

}  // namespace pk::cuda
