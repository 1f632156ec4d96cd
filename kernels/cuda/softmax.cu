// Softmax and log-softmax CUDA kernels over the last dim D of R rows, a warp
// per row. Each row is shifted by its maximum before exponentiating, so no
// exp overflows whatever the offset of the logits.
#include "kernels/cuda/common.cuh"

namespace pk::cuda {

namespace {

// Maximum of a row, in every lane of the warp.
__device__ inline float row_max(const float* xr, int64_t D, int lane) {
  float m = -INFINITY;
  for (int64_t d = lane; d < D; d += kWarp) m = fmaxf(m, xr[d]);
  return warp_max(m);
}

__global__ void softmax_forward_kernel(int64_t R, int64_t D, const float* x, float* y) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = global_warp(); r < R; r += warp_stride()) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    const float m = row_max(xr, D, lane);
    float total = 0.0f;
    for (int64_t d = lane; d < D; d += kWarp) {
      const float e = expf(xr[d] - m);
      yr[d] = e;
      total += e;
    }
    total = warp_sum(total);
    for (int64_t d = lane; d < D; d += kWarp) yr[d] /= total;
  }
}

// dx = y * (dy - sum(dy * y))
__global__ void softmax_backward_kernel(int64_t R, int64_t D, const float* y, const float* dy,
                                        float* dx) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = global_warp(); r < R; r += warp_stride()) {
    const float* yr = y + r * D;
    const float* dyr = dy + r * D;
    float dot = 0.0f;
    for (int64_t d = lane; d < D; d += kWarp) dot += dyr[d] * yr[d];
    dot = warp_sum(dot);
    for (int64_t d = lane; d < D; d += kWarp) dx[r * D + d] = yr[d] * (dyr[d] - dot);
  }
}

// y = (x - max) - log(sum(exp(x - max)))
__global__ void log_softmax_forward_kernel(int64_t R, int64_t D, const float* x, float* y) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = global_warp(); r < R; r += warp_stride()) {
    const float* xr = x + r * D;
    const float m = row_max(xr, D, lane);
    float total = 0.0f;
    for (int64_t d = lane; d < D; d += kWarp) total += expf(xr[d] - m);
    const float log_total = logf(warp_sum(total));
    for (int64_t d = lane; d < D; d += kWarp) y[r * D + d] = (xr[d] - m) - log_total;
  }
}

// dx = dy - exp(y) * sum(dy)
__global__ void log_softmax_backward_kernel(int64_t R, int64_t D, const float* y, const float* dy,
                                            float* dx) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = global_warp(); r < R; r += warp_stride()) {
    const float* dyr = dy + r * D;
    float total = 0.0f;
    for (int64_t d = lane; d < D; d += kWarp) total += dyr[d];
    total = warp_sum(total);
    for (int64_t d = lane; d < D; d += kWarp) dx[r * D + d] = dyr[d] - expf(y[r * D + d]) * total;
  }
}

}  // namespace

void softmax_forward(int64_t R, int64_t D, const float* x, float* y) {
  if (R <= 0 || D <= 0) return;
  softmax_forward_kernel<<<row_blocks(R), kThreads>>>(R, D, x, y);
  check_launch("softmax_forward_kernel");
}

void softmax_backward(int64_t R, int64_t D, const float* y, const float* dy, float* dx) {
  if (R <= 0 || D <= 0) return;
  softmax_backward_kernel<<<row_blocks(R), kThreads>>>(R, D, y, dy, dx);
  check_launch("softmax_backward_kernel");
}

void log_softmax_forward(int64_t R, int64_t D, const float* x, float* y) {
  if (R <= 0 || D <= 0) return;
  log_softmax_forward_kernel<<<row_blocks(R), kThreads>>>(R, D, x, y);
  check_launch("log_softmax_forward_kernel");
}

void log_softmax_backward(int64_t R, int64_t D, const float* y, const float* dy, float* dx) {
  if (R <= 0 || D <= 0) return;
  log_softmax_backward_kernel<<<row_blocks(R), kThreads>>>(R, D, y, dy, dx);
  check_launch("log_softmax_backward_kernel");
}

}  // namespace pk::cuda
