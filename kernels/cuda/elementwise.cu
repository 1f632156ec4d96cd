// Element-wise CUDA kernels: unary math, broadcasting binary ops, select.
// The per-element formulas are kernels/elementwise_math.h, shared with the CPU.
#include "kernels/cuda/broadcast.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/elementwise_math.h"

namespace pk::cuda {

namespace {

__global__ void unary_forward_kernel(UnaryOp op, const float* x, float* y, int64_t n, float p0,
                                     float p1) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) y[i] = unary_value(op, x[i], p0, p1);
}

__global__ void unary_backward_kernel(UnaryOp op, const float* x, const float* dy, float* dx,
                                      int64_t n, float p0, float p1) {
  for (int64_t i = global_index(); i < n; i += grid_stride())
    dx[i] = dy[i] * unary_derivative(op, x[i], p0, p1);
}

__global__ void binary_forward_kernel(BinaryOp op, BroadcastIndex g, const float* a, const float* b,
                                      float* out, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    int64_t ia, ib;
    broadcast_offsets(g, i, ia, ib);
    out[i] = binary_value(op, a[ia], b[ib]);
  }
}

// Full-size gradient of one operand: partial[i] = dout[i] * d out[i] / d operand.
__global__ void binary_partial_kernel(BinaryOp op, bool wrt_a, BroadcastIndex g, const float* a,
                                      const float* b, const float* dout, float* partial,
                                      int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    int64_t ia, ib;
    broadcast_offsets(g, i, ia, ib);
    partial[i] = dout[i] * binary_derivative(op, wrt_a, a[ia], b[ib]);
  }
}

__global__ void select_forward_kernel(const float* mask, const float* a, const float* b, float* out,
                                      int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride())
    out[i] = mask[i] != 0.0f ? a[i] : b[i];
}

__global__ void select_backward_kernel(const float* mask, const float* dout, float* da, float* db,
                                       int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const bool m = mask[i] != 0.0f;
    da[i] = m ? dout[i] : 0.0f;
    db[i] = m ? 0.0f : dout[i];
  }
}

int64_t output_size(const BroadcastShape& s) {
  int64_t n = 1;
  for (int d = 0; d < s.ndim; ++d) n *= s.out[d];
  return n;
}

bool same_shape(int ndim, const int64_t* x, const int64_t* y) {
  for (int d = 0; d < ndim; ++d)
    if (x[d] != y[d]) return false;
  return true;
}

// Gradient of one operand of shape `shape`: the full-size partial, summed
// over the operand's broadcast dims unless it has the output's shape.
void operand_gradient(BinaryOp op, bool wrt_a, const BroadcastShape& s, const int64_t* shape,
                      const float* a, const float* b, const float* dout, float* grad) {
  const int64_t n = output_size(s);
  const BroadcastIndex g = make_broadcast_index(s);
  if (same_shape(s.ndim, shape, s.out)) {
    binary_partial_kernel<<<grid_for(n), kThreads>>>(op, wrt_a, g, a, b, dout, grad, n);
    check_launch("binary_partial_kernel");
    return;
  }
  Scratch full(static_cast<size_t>(n) * sizeof(float));
  binary_partial_kernel<<<grid_for(n), kThreads>>>(op, wrt_a, g, a, b, dout, full.as<float>(), n);
  check_launch("binary_partial_kernel");
  BroadcastShape r = s;
  for (int d = 0; d < s.ndim; ++d) {
    r.a[d] = s.out[d];
    r.out[d] = shape[d];
  }
  sum_to_shape(r, full.as<float>(), grad);
}

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1) {
  if (n <= 0) return;
  unary_forward_kernel<<<grid_for(n), kThreads>>>(op, x, y, n, p0, p1);
  check_launch("unary_forward_kernel");
}

void unary_backward(UnaryOp op, const float* x, const float* dy, float* dx, int64_t n, float p0,
                    float p1) {
  if (n <= 0) return;
  unary_backward_kernel<<<grid_for(n), kThreads>>>(op, x, dy, dx, n, p0, p1);
  check_launch("unary_backward_kernel");
}

void binary_forward(BinaryOp op, const BroadcastShape& s, const float* a, const float* b,
                    float* out) {
  const int64_t n = output_size(s);
  if (n <= 0) return;
  binary_forward_kernel<<<grid_for(n), kThreads>>>(op, make_broadcast_index(s), a, b, out, n);
  check_launch("binary_forward_kernel");
}

void binary_backward(BinaryOp op, const BroadcastShape& s, const float* a, const float* b,
                     const float* dout, float* da, float* db) {
  if (da) operand_gradient(op, true, s, s.a, a, b, dout, da);
  if (db) operand_gradient(op, false, s, s.b, a, b, dout, db);
}

void select_forward(const float* mask, const float* a, const float* b, float* out, int64_t n) {
  if (n <= 0) return;
  select_forward_kernel<<<grid_for(n), kThreads>>>(mask, a, b, out, n);
  check_launch("select_forward_kernel");
}

void select_backward(const float* mask, const float* dout, float* da, float* db, int64_t n) {
  if (n <= 0) return;
  select_backward_kernel<<<grid_for(n), kThreads>>>(mask, dout, da, db, n);
  check_launch("select_backward_kernel");
}

}  // namespace pk::cuda
