// Matrix products on the GEMM kernel: matmul (batched) and linear.
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"

namespace pk {

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "matmul");
  check(a.dim() >= 2 && b.dim() >= 2, [&] {
    return "matmul: needs tensors of rank >= 2, got " + a.describe() + " and " + b.describe();
  });
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  check(b.size(-2) == K,
        [&] { return "matmul: inner dimensions differ: " + a.describe() + " @ " + b.describe(); });
  Shape batch_shape(a.shape().begin(), a.shape().end() - 2);
  bool b_shared = b.dim() == 2;  // one matrix for every batch entry
  check(b_shared || Shape(b.shape().begin(), b.shape().end() - 2) == batch_shape,
        [&] { return "matmul: batch dimensions differ: " + a.describe() + " @ " + b.describe(); });
  const int64_t batch = shape_numel(batch_shape);
  Shape out_shape = batch_shape;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, DType::F32, a.device());
  const Backend& be = backend(a.device());
  if (b_shared) {  // fold the batch into M: one big GEMM
    be.gemm(false, false, batch * M, N, K, 1.0f, a.data(), b.data(), 0.0f, out.data(), 1, 0, 0, 0);
  } else {
    be.gemm(false, false, M, N, K, 1.0f, a.data(), b.data(), 0.0f, out.data(), batch, M * K,
            K * N, M * N);
  }
  Tensor sa = a.detach(), sb = b.detach();
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  trace_op("matmul", {a, b}, out);
  return record(out, "matmul", {a, b}, [=](const Tensor& g) -> std::vector<Tensor> {
    const Backend& be = backend(g.device());
    Tensor da, db;
    if (need_a) {  // dA = dC @ B^T
      da = Tensor::empty(sa.shape(), DType::F32, g.device());
      if (b_shared)
        be.gemm(false, true, batch * M, K, N, 1.0f, g.data(), sb.data(), 0.0f, da.data(), 1, 0, 0, 0);
      else
        be.gemm(false, true, M, K, N, 1.0f, g.data(), sb.data(), 0.0f, da.data(), batch, M * N,
                K * N, M * K);
    }
    if (need_b) {  // dB = A^T @ dC
      db = Tensor::empty(sb.shape(), DType::F32, g.device());
      if (b_shared)
        be.gemm(true, false, K, N, batch * M, 1.0f, sa.data(), g.data(), 0.0f, db.data(), 1, 0, 0, 0);
      else
        be.gemm(true, false, K, N, M, 1.0f, sa.data(), g.data(), 0.0f, db.data(), batch, M * K,
                M * N, K * N);
    }
    return {da, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_same_device(x, w, "linear");
  check(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1),
        [&] { return "linear: input " + x.describe() + " does not fit weight " + w.describe(); });
  const int64_t in = w.size(1), out_features = w.size(0), rows = x.numel() / in;
  if (bias.defined())
    check(bias.shape() == Shape{out_features}, [&] {
      return "linear: bias " + bias.describe() + " does not fit weight " + w.describe();
    });
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor out = Tensor::empty(out_shape, DType::F32, x.device());
  const Backend& be = backend(x.device());
  if (bias.defined()) {  // start from the broadcast bias, then accumulate the product
    BroadcastShape s = make_broadcast({1, out_features}, {1, out_features}, {rows, out_features});
    be.broadcast_to(s, bias.data(), out.data());
  }
  be.gemm(false, true, rows, out_features, in, 1.0f, x.data(), w.data(),
          bias.defined() ? 1.0f : 0.0f, out.data(), 1, 0, 0, 0);
  Tensor sx = x.detach(), sw = w.detach();
  bool need_x = x.requires_grad(), need_w = w.requires_grad();
  bool need_b = bias.defined() && bias.requires_grad();
  trace_op("linear", {x, w, bias}, out);
  return record(out, "linear", {x, w, bias}, [=](const Tensor& g) -> std::vector<Tensor> {
    const Backend& be = backend(g.device());
    Tensor dx, dw, db;
    if (need_x) {  // dx = g @ W
      dx = Tensor::empty(sx.shape(), DType::F32, g.device());
      be.gemm(false, false, rows, in, out_features, 1.0f, g.data(), sw.data(), 0.0f, dx.data(), 1,
              0, 0, 0);
    }
    if (need_w) {  // dW = g^T @ x
      dw = Tensor::empty(sw.shape(), DType::F32, g.device());
      be.gemm(true, false, out_features, in, rows, 1.0f, g.data(), sx.data(), 0.0f, dw.data(), 1,
              0, 0, 0);
    }
    if (need_b) db = sum_to(reshape(g, {rows, out_features}), {out_features});
    return {dx, dw, db};
  });
}

}  // namespace pk
