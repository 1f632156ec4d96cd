// Per-element formulas of the unary and binary ops and their derivatives,
// one definition for the CPU loops and the CUDA kernels, so that both
// backends compute the same thing term by term. Clamps are two selects in
// sequence and tests use a non-short-circuit &, so that the CPU loops have
// no branches and vectorize.
#pragma once

#include <math.h>

#include "kernels/kernels.h"

#ifdef __CUDACC__
#define PK_HOST_DEVICE __host__ __device__
#else
#define PK_HOST_DEVICE
#endif

namespace pk {

constexpr float kSqrtHalf = 0.70710678118654752f;      // 1 / sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143268f;  // 1 / sqrt(2 pi)

PK_HOST_DEVICE inline float unary_value(UnaryOp op, float x, float p0, float p1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return logf(x);
    case UnaryOp::Sqrt: return sqrtf(x);
    case UnaryOp::Pow: return powf(x, p0);
    case UnaryOp::AddScalar: return x + p0;
    case UnaryOp::MulScalar: return x * p0;
    case UnaryOp::Relu: return x > 0.0f ? x : 0.0f;
    case UnaryOp::Relu6: {
      const float lower = x < 0.0f ? 0.0f : x;
      return lower > 6.0f ? 6.0f : lower;
    }
    case UnaryOp::Gelu: return 0.5f * x * (1.0f + erff(x * kSqrtHalf));
    case UnaryOp::Sigmoid: return 1.0f / (1.0f + expf(-x));
    case UnaryOp::Clamp: {  // p0 <= p1
      const float lower = x < p0 ? p0 : x;
      return lower > p1 ? p1 : lower;
    }
    case UnaryOp::RoundSTE: return rintf(x);  // half to even, like torch.round
    case UnaryOp::FloorSTE: return floorf(x);
    case UnaryOp::Abs: return fabsf(x);
  }
  return 0.0f;
}

// d op(x) / dx
PK_HOST_DEVICE inline float unary_derivative(UnaryOp op, float x, float p0, float p1) {
  switch (op) {
    case UnaryOp::Neg: return -1.0f;
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return 1.0f / x;
    case UnaryOp::Sqrt: return 0.5f / sqrtf(x);
    case UnaryOp::Pow: return p0 == 0.0f ? 0.0f : p0 * powf(x, p0 - 1.0f);
    case UnaryOp::AddScalar: return 1.0f;
    case UnaryOp::MulScalar: return p0;
    case UnaryOp::Relu: return x > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::Relu6: return (x > 0.0f) & (x < 6.0f) ? 1.0f : 0.0f;
    case UnaryOp::Gelu: {
      const float cdf = 0.5f * (1.0f + erff(x * kSqrtHalf));
      const float pdf = expf(-0.5f * x * x) * kInvSqrtTwoPi;
      return cdf + x * pdf;
    }
    case UnaryOp::Sigmoid: {
      const float s = 1.0f / (1.0f + expf(-x));
      return s * (1.0f - s);
    }
    case UnaryOp::Clamp: return (x >= p0) & (x <= p1) ? 1.0f : 0.0f;
    case UnaryOp::RoundSTE: return 1.0f;
    case UnaryOp::FloorSTE: return 1.0f;
    case UnaryOp::Abs: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
  }
  return 0.0f;
}

PK_HOST_DEVICE inline float binary_value(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.0f;
}

// d out / d a (wrt_a) or d out / d b.
PK_HOST_DEVICE inline float binary_derivative(BinaryOp op, bool wrt_a, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return 1.0f;
    case BinaryOp::Sub: return wrt_a ? 1.0f : -1.0f;
    case BinaryOp::Mul: return wrt_a ? b : a;
    case BinaryOp::Div: return wrt_a ? 1.0f / b : -a / (b * b);
  }
  return 0.0f;
}

}  // namespace pk
