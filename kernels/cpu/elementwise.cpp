// Element-wise CPU kernels: unary math, broadcasting binary ops, select.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#include "kernels/cpu/broadcast.h"
#include "kernels/cpu/parallel_thresholds.h"
#include "kernels/elementwise_math.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

// Call f(op) with op as a compile-time constant, so that element loops are
// branch-free and vectorize instead of switching per element.
template <typename F>
void with_op(UnaryOp op, F f) {
  using U = UnaryOp;
  switch (op) {
    case U::Neg:
      return f(std::integral_constant<U, U::Neg>{});
    case U::Exp:
      return f(std::integral_constant<U, U::Exp>{});
    case U::Log:
      return f(std::integral_constant<U, U::Log>{});
    case U::Sqrt:
      return f(std::integral_constant<U, U::Sqrt>{});
    case U::Pow:
      return f(std::integral_constant<U, U::Pow>{});
    case U::AddScalar:
      return f(std::integral_constant<U, U::AddScalar>{});
    case U::MulScalar:
      return f(std::integral_constant<U, U::MulScalar>{});
    case U::Relu:
      return f(std::integral_constant<U, U::Relu>{});
    case U::Relu6:
      return f(std::integral_constant<U, U::Relu6>{});
    case U::Gelu:
      return f(std::integral_constant<U, U::Gelu>{});
    case U::Sigmoid:
      return f(std::integral_constant<U, U::Sigmoid>{});
    case U::Clamp:
      return f(std::integral_constant<U, U::Clamp>{});
    case U::RoundSTE:
      return f(std::integral_constant<U, U::RoundSTE>{});
    case U::FloorSTE:
      return f(std::integral_constant<U, U::FloorSTE>{});
    case U::Abs:
      return f(std::integral_constant<U, U::Abs>{});
  }
}

template <typename F>
void with_op(BinaryOp op, F f) {
  using B = BinaryOp;
  switch (op) {
    case B::Add: return f(std::integral_constant<B, B::Add>{});
    case B::Sub: return f(std::integral_constant<B, B::Sub>{});
    case B::Mul: return f(std::integral_constant<B, B::Mul>{});
    case B::Div: return f(std::integral_constant<B, B::Div>{});
  }
}

bool same_shape(int n, const int64_t* x, const int64_t* y) {
  for (int i = 0; i < n; ++i)
    if (x[i] != y[i]) return false;
  return true;
}

bool is_scalar(int n, const int64_t* shape) {
  for (int i = 0; i < n; ++i)
    if (shape[i] != 1) return false;
  return true;
}

// Calls f(i, offset_a, offset_b) for every output element i, in parallel.
template <typename F>
void for_each_broadcast(const BroadcastShape& s, F f) {
  int64_t n = 1;
  for (int d = 0; d < s.ndim; ++d) n *= s.out[d];
  const bool a_full = same_shape(s.ndim, s.a, s.out), b_full = same_shape(s.ndim, s.b, s.out);
  if (a_full && b_full) {
#pragma omp parallel for simd firstprivate(f) if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) f(i, i, i);
    return;
  }
  // A scalar against a full tensor (loss scaling, scalar upstream gradients):
  // a flat loop instead of per-row index arithmetic.
  if (a_full && is_scalar(s.ndim, s.b)) {
#pragma omp parallel for simd firstprivate(f) if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) f(i, i, 0);
    return;
  }
  if (b_full && is_scalar(s.ndim, s.a)) {
#pragma omp parallel for simd firstprivate(f) if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) f(i, 0, i);
    return;
  }
  int64_t sa[kMaxDims], sb[kMaxDims];
  broadcast_strides(s.ndim, s.a, s.out, sa);
  broadcast_strides(s.ndim, s.b, s.out, sb);
  // Rows along the last dim share one inner stride per operand.
  int64_t inner = s.ndim ? s.out[s.ndim - 1] : 1;
  int64_t ia = s.ndim ? sa[s.ndim - 1] : 0, ib = s.ndim ? sb[s.ndim - 1] : 0;
  int64_t rows = inner ? n / inner : 0;
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = r * inner;
    int64_t oa = broadcast_offset(s.ndim, s.out, sa, base);
    int64_t ob = broadcast_offset(s.ndim, s.out, sb, base);
    for (int64_t j = 0; j < inner; ++j) f(base + j, oa + j * ia, ob + j * ib);
  }
}

// GELU on chunks as Eigen array expressions: erf and exp vectorized (the
// scalar erff was the largest single cost of a ViT block).
constexpr int64_t kChunk = 1024;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

void gelu_forward(const float* x, float* y, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t i = k * kChunk, len = std::min(kChunk, n - i);
    const ConstArrayMap v(x + i, len);
    ArrayMap(y + i, len) = 0.5f * v * (1.0f + (v * static_cast<float>(M_SQRT1_2)).erf());
  }
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t i = k * kChunk, len = std::min(kChunk, n - i);
    const ConstArrayMap v(x + i, len);
    const auto cdf = 0.5f * (1.0f + (v * static_cast<float>(M_SQRT1_2)).erf());
    const auto pdf = (-0.5f * v * v).exp() * static_cast<float>(0.5 * M_2_SQRTPI * M_SQRT1_2);
    ArrayMap(dx + i, len) = ConstArrayMap(dy + i, len) * (cdf + v * pdf);
  }
}

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1) {
  if (op == UnaryOp::Gelu) return gelu_forward(x, y, n);
  with_op(op, [&](auto k) {
    // Local copies: read through the lambda's captures, the pointers would
    // be reloaded on every element (they might alias y) and the loop would
    // not vectorize.
    const float* in = x;
    float* out = y;
    const float a = p0, b = p1;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = unary_value(k, in[i], a, b);
  });
}

void unary_backward(UnaryOp op, const float* x, const float* dy, float* dx, int64_t n, float p0,
                    float p1) {
  if (op == UnaryOp::Gelu) return gelu_backward(x, dy, dx, n);
  with_op(op, [&](auto k) {
    const float* in = x;  // local copies, as in unary_forward
    const float* grad_out = dy;
    float* grad_in = dx;
    const float a = p0, b = p1;
#pragma omp parallel for simd if (parallel: n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) grad_in[i] = grad_out[i] * unary_derivative(k, in[i], a, b);
  });
}

void binary_forward(BinaryOp op, const BroadcastShape& s, const float* a, const float* b,
                    float* out) {
  with_op(op, [&](auto k) {
    for_each_broadcast(s, [=](int64_t i, int64_t ia, int64_t ib) {
      out[i] = binary_value(k, a[ia], b[ib]);
    });
  });
}

void binary_backward(BinaryOp op, const BroadcastShape& s, const float* a, const float* b,
                     const float* dout, float* da, float* db) {
  int64_t n = 1;
  for (int d = 0; d < s.ndim; ++d) n *= s.out[d];
  // Full-size partial gradients, then reduced over broadcast dims.
  auto reduce_into = [&](float* dst, const int64_t* shape, auto partial) {
    BroadcastShape r = s;
    for (int d = 0; d < s.ndim; ++d) { r.a[d] = s.out[d]; r.out[d] = shape[d]; }
    if (same_shape(s.ndim, shape, s.out)) {
      for_each_broadcast(s, [=](int64_t i, int64_t ia, int64_t ib) { dst[i] = partial(i, ia, ib); });
      return;
    }
    std::vector<float> full(n);
    float* full_data = full.data();
    for_each_broadcast(s, [=](int64_t i, int64_t ia, int64_t ib) { full_data[i] = partial(i, ia, ib); });
    sum_to_shape(r, full_data, dst);
  };
  with_op(op, [&](auto k) {
    if (da) reduce_into(da, s.a, [=](int64_t i, int64_t ia, int64_t ib) {
      return dout[i] * binary_derivative(k, true, a[ia], b[ib]);
    });
    if (db) reduce_into(db, s.b, [=](int64_t i, int64_t ia, int64_t ib) {
      return dout[i] * binary_derivative(k, false, a[ia], b[ib]);
    });
  });
}

void select_forward(const float* mask, const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = mask[i] != 0.0f ? a[i] : b[i];
}

void select_backward(const float* mask, const float* dout, float* da, float* db, int64_t n) {
#pragma omp parallel for simd if (parallel: n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    bool m = mask[i] != 0.0f;
    da[i] = m ? dout[i] : 0.0f;
    db[i] = m ? 0.0f : dout[i];
  }
}

}  // namespace pk::cpu
