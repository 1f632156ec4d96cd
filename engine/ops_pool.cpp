// 2D pooling ops: forward kernel and backward side by side.
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/trace.h"

namespace pk {

namespace {

// Checks shared by max and average pooling and their geometry (PyTorch's
// rules: padding at most half the kernel, so that no window is all padding).
PoolGeom pool_geometry(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                       bool count_include_pad, const char* op) {
  const std::string where = std::string(op) + "(kernel " + std::to_string(kernel) + ", stride " +
                            std::to_string(stride) + ", padding " + std::to_string(padding) +
                            ") on " + x.describe();
  check(x.dim() == 4, [&] { return where + ": input must be [N, C, H, W]"; });
  check(kernel >= 1 && stride >= 1, [&] { return where + ": kernel and stride must be >= 1"; });
  check(padding >= 0 && 2 * padding <= kernel,
        [&] { return where + ": padding must be in [0, kernel / 2]"; });
  PoolGeom g{};
  g.N = x.size(0);
  g.C = x.size(1);
  g.H = x.size(2);
  g.W = x.size(3);
  g.KH = g.KW = kernel;
  g.stride_h = g.stride_w = stride;
  g.pad_h = g.pad_w = padding;
  g.count_include_pad = count_include_pad;
  check(g.H + 2 * padding >= kernel && g.W + 2 * padding >= kernel,
        [&] { return where + ": kernel larger than the padded input"; });
  g.OH = (g.H + 2 * padding - kernel) / stride + 1;
  g.OW = (g.W + 2 * padding - kernel) / stride + 1;
  return g;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const PoolGeom g = pool_geometry(x, kernel, stride, padding, false, "max_pool2d");
  Tensor out = Tensor::empty({g.N, g.C, g.OH, g.OW}, DType::F32, x.device());
  backend(x.device()).max_pool2d_forward(g, x.data(), out.data());
  Tensor sx = x.detach();
  trace_op("max_pool2d", {x}, out, [&] { return TraceAttrs{{kernel, stride, padding}, {}}; });
  return record(out, "max_pool2d", {x}, [g, sx](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(sx.shape(), DType::F32, dy.device());
    backend(dy.device()).max_pool2d_backward(g, sx.data(), dy.data(), dx.data());
    return {dx};
  });
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding,
                  bool count_include_pad) {
  const PoolGeom g = pool_geometry(x, kernel, stride, padding, count_include_pad, "avg_pool2d");
  Tensor out = Tensor::empty({g.N, g.C, g.OH, g.OW}, DType::F32, x.device());
  backend(x.device()).avg_pool2d_forward(g, x.data(), out.data());
  const Shape in_shape = x.shape();
  trace_op("avg_pool2d", {x}, out, [&] {
    return TraceAttrs{{kernel, stride, padding, count_include_pad ? 1 : 0}, {}};
  });
  return record(out, "avg_pool2d", {x}, [g, in_shape](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(in_shape, DType::F32, dy.device());
    backend(dy.device()).avg_pool2d_backward(g, dy.data(), dx.data());
    return {dx};
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check(x.dim() == 4,
        [&] { return "adaptive_avg_pool2d: input must be [N, C, H, W], got " + x.describe(); });
  check(out_h >= 1 && out_w >= 1, [&] {
    return "adaptive_avg_pool2d: output size " + std::to_string(out_h) + "x" +
           std::to_string(out_w) + " must be positive (input " + x.describe() + ")";
  });
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  check(H >= 1 && W >= 1,
        [&] { return "adaptive_avg_pool2d: empty spatial input " + x.describe(); });
  Tensor out = Tensor::empty({N, C, out_h, out_w}, DType::F32, x.device());
  backend(x.device()).adaptive_avg_pool2d_forward(N * C, H, W, out_h, out_w, x.data(), out.data());
  const Shape in_shape = x.shape();
  trace_op("adaptive_avg_pool2d", {x}, out, [&] { return TraceAttrs{{out_h, out_w}, {}}; });
  return record(out, "adaptive_avg_pool2d", {x}, [=](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(in_shape, DType::F32, dy.device());
    backend(dy.device()).adaptive_avg_pool2d_backward(N * C, H, W, out_h, out_w, dy.data(),
                                                      dx.data());
    return {dx};
  });
}

}  // namespace pk
