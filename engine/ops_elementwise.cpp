// Element-wise ops: forward kernel and backward side by side.
#include <algorithm>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"
#include "engine/rng.h"

namespace pk {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    check(da == db || da == 1 || db == 1, [&] {
      return "shapes " + shape_str(a) + " and " + shape_str(b) + " cannot be broadcast";
    });
    out[i] = da == 1 ? db : da;
  }
  return out;
}

BroadcastShape make_broadcast(const Shape& a, const Shape& b, const Shape& out) {
  BroadcastShape s{};
  s.ndim = static_cast<int>(out.size());
  check(s.ndim <= kMaxDims, "tensors of more than 8 dims are not supported");
  for (int i = 0; i < s.ndim; ++i) {
    int ia = i - (s.ndim - static_cast<int>(a.size()));
    int ib = i - (s.ndim - static_cast<int>(b.size()));
    s.a[i] = ia < 0 ? 1 : a[ia];
    s.b[i] = ib < 0 ? 1 : b[ib];
    s.out[i] = out[i];
  }
  return s;
}

// ---- binary ----

static Tensor binary(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same_device(a, b, name);
  Shape out_shape = broadcast_shapes(a.shape(), b.shape());
  BroadcastShape s = make_broadcast(a.shape(), b.shape(), out_shape);
  Tensor out = Tensor::empty(out_shape, DType::F32, a.device());
  backend(a.device()).binary_forward(op, s, a.data(), b.data(), out.data());
  trace_op(name, {a, b}, out);
  Tensor sa = a.detach(), sb = b.detach();
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record(out, name, {a, b},
                [op, s, sa, sb, need_a, need_b](const Tensor& g) -> std::vector<Tensor> {
                  Tensor da, db;
                  if (need_a) da = Tensor::empty(sa.shape(), DType::F32, g.device());
                  if (need_b) db = Tensor::empty(sb.shape(), DType::F32, g.device());
                  backend(g.device()).binary_backward(op, s, sa.data(), sb.data(), g.data(),
                                                      need_a ? da.data() : nullptr,
                                                      need_b ? db.data() : nullptr);
                  return {da, db};
                });
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, "add", a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, "sub", a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, "mul", a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, "div", a, b); }

// ---- unary ----

static Tensor unary(UnaryOp op, const char* name, const Tensor& x, float p0 = 0.0f,
                    float p1 = 0.0f) {
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  backend(x.device()).unary_forward(op, x.data(), y.data(), x.numel(), p0, p1);
  trace_op(name, {x}, y, [&] { return TraceAttrs{{}, {p0, p1}}; });
  Tensor sx = x.detach();
  return record(y, name, {x}, [op, sx, p0, p1](const Tensor& g) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(sx.shape(), DType::F32, g.device());
    backend(g.device()).unary_backward(op, sx.data(), g.data(), dx.data(), sx.numel(), p0, p1);
    return {dx};
  });
}

Tensor add(const Tensor& x, float s) { return unary(UnaryOp::AddScalar, "add_scalar", x, s); }
Tensor mul(const Tensor& x, float s) { return unary(UnaryOp::MulScalar, "mul_scalar", x, s); }
Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, "neg", x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, "exp", x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, "log", x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, "sqrt", x); }
Tensor pow(const Tensor& x, float e) { return unary(UnaryOp::Pow, "pow", x, e); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, "abs", x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, "relu", x); }
Tensor relu6(const Tensor& x) { return unary(UnaryOp::Relu6, "relu6", x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::Gelu, "gelu", x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, "sigmoid", x); }
Tensor clamp(const Tensor& x, float lo, float hi) {
  check(lo <= hi, "clamp: lo > hi");
  return unary(UnaryOp::Clamp, "clamp", x, lo, hi);
}
Tensor round_ste(const Tensor& x) { return unary(UnaryOp::RoundSTE, "round_ste", x); }
Tensor floor_ste(const Tensor& x) { return unary(UnaryOp::FloorSTE, "floor_ste", x); }

// ---- select and dropout ----

Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  check(mask.shape() == a.shape() && a.shape() == b.shape(), [&] {
    return "where: mask " + shape_str(mask.shape()) + ", a " + shape_str(a.shape()) + " and b " +
           shape_str(b.shape()) + " must have one shape";
  });
  check_same_device(a, b, "where");
  check_same_device(mask, a, "where");
  Tensor out = Tensor::empty(a.shape(), DType::F32, a.device());
  backend(a.device()).select_forward(mask.data(), a.data(), b.data(), out.data(), a.numel());
  trace_op("where", {mask, a, b}, out);
  Tensor sm = mask.detach();
  return record(out, "where", {a, b}, [sm](const Tensor& g) -> std::vector<Tensor> {
    Tensor da = Tensor::empty(g.shape(), DType::F32, g.device());
    Tensor db = Tensor::empty(g.shape(), DType::F32, g.device());
    backend(g.device()).select_backward(sm.data(), g.data(), da.data(), db.data(), g.numel());
    return {da, db};
  });
}

Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  check(p >= 0.0f && p < 1.0f, "dropout: p must be in [0, 1)");
  if (!training || p == 0.0f) return x;
  Tensor keep = Tensor::empty(x.shape());
  gen.fill_bernoulli(keep.data(), keep.numel(), p, 0.0f, 1.0f / (1.0f - p));
  return mul(x, keep.to(x.device()));
}

}  // namespace pk
