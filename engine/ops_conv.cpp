// 2D convolution: forward kernel and its two backward kernels side by side.
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"

namespace pk {

namespace {

// floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1, as PyTorch.
int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt) {
  check_same_device(x, w, "conv2d");
  const auto shapes = [&] { return " (input " + x.describe() + ", weight " + w.describe() + ")"; };
  check(x.dim() == 4, [&] { return "conv2d: input must be [N, C, H, W]" + shapes(); });
  check(w.dim() == 4, [&] { return "conv2d: weight must be [O, C/groups, KH, KW]" + shapes(); });
  check(opt.stride_h >= 1 && opt.stride_w >= 1 && opt.dil_h >= 1 && opt.dil_w >= 1 &&
            opt.pad_h >= 0 && opt.pad_w >= 0 && opt.groups >= 1,
        [&] {
          return "conv2d: stride and dilation must be >= 1, padding >= 0, groups >= 1" + shapes();
        });
  ConvGeom g{};
  g.N = x.size(0);
  g.C = x.size(1);
  g.H = x.size(2);
  g.W = x.size(3);
  g.O = w.size(0);
  g.KH = w.size(2);
  g.KW = w.size(3);
  g.stride_h = opt.stride_h;
  g.stride_w = opt.stride_w;
  g.pad_h = opt.pad_h;
  g.pad_w = opt.pad_w;
  g.dil_h = opt.dil_h;
  g.dil_w = opt.dil_w;
  g.groups = opt.groups;
  check(g.C % g.groups == 0 && g.O % g.groups == 0, [&] {
    return "conv2d: groups " + std::to_string(g.groups) +
           " must divide both input and output channels" + shapes();
  });
  check(w.size(1) == g.C / g.groups, [&] {
    return "conv2d: weight expects " + std::to_string(w.size(1) * g.groups) +
           " input channels with groups " + std::to_string(g.groups) + shapes();
  });
  check(g.KH >= 1 && g.KW >= 1, [&] { return "conv2d: empty kernel" + shapes(); });
  // cuDNN cannot describe a tensor without channels; no network has one.
  check(g.C >= 1 && g.O >= 1,
        [&] { return "conv2d: input and output need at least one channel" + shapes(); });
  if (bias.defined()) {
    check_same_device(x, bias, "conv2d");
    check(bias.shape() == Shape{g.O}, [&] {
      return "conv2d: bias " + bias.describe() + " must be [" + std::to_string(g.O) + "]" +
             shapes();
    });
  }
  g.OH = conv_out_size(g.H, g.KH, g.stride_h, g.pad_h, g.dil_h);
  g.OW = conv_out_size(g.W, g.KW, g.stride_w, g.pad_w, g.dil_w);
  check(g.OH > 0 && g.OW > 0,
        [&] { return "conv2d: the (dilated) kernel does not fit the padded input" + shapes(); });

  Tensor out = Tensor::empty({g.N, g.O, g.OH, g.OW}, DType::F32, x.device());
  backend(x.device())
      .conv2d_forward(g, x.data(), w.data(), bias.defined() ? bias.data() : nullptr, out.data());

  Tensor sx = x.detach(), sw = w.detach();
  const bool need_x = x.requires_grad(), need_w = w.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  trace_op("conv2d", {x, w, bias}, out, [&] {
    return TraceAttrs{{g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w, g.groups}, {}};
  });
  return record(out, "conv2d", {x, w, bias}, [=](const Tensor& dy) -> std::vector<Tensor> {
    const Backend& be = backend(dy.device());
    Tensor dx, dw, db;
    if (need_x) {
      dx = Tensor::empty(sx.shape(), DType::F32, dy.device());
      be.conv2d_backward_data(g, dy.data(), sw.data(), dx.data());
    }
    if (need_w) {
      dw = Tensor::empty(sw.shape(), DType::F32, dy.device());
      be.conv2d_backward_weight(g, sx.data(), dy.data(), dw.data());
    }
    if (need_b) db = sum(dy, {0, 2, 3});
    return {dx, dw, db};
  });
}

}  // namespace pk
