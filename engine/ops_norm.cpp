// Normalization ops: batch norm over NCHW channels and layer norm over the
// last dim, each forward kernel beside its backward.
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"

namespace pk {

namespace {

float* data_or_null(const Tensor& t) { return t.defined() ? t.data() : nullptr; }
Tensor detach_or_undefined(const Tensor& t) { return t.defined() ? t.detach() : Tensor(); }

// An optional per-feature parameter must be [size] on x's device.
void check_param(const Tensor& param, const char* role, int64_t size, const Tensor& x,
                 const char* op) {
  if (!param.defined()) return;
  check(param.shape() == Shape{size}, [&] {
    return std::string(op) + ": " + role + " " + param.describe() + " does not fit input " +
           x.describe() + " (needs [" + std::to_string(size) + "])";
  });
  check_same_device(param, x, op);
}

// rstd = (var + eps)^-1/2, computed on var's device.
Tensor reciprocal_std(const Tensor& var, float eps) {
  Tensor rstd = Tensor::empty(var.shape(), DType::F32, var.device());
  const Backend& be = backend(var.device());
  be.unary_forward(UnaryOp::AddScalar, var.data(), rstd.data(), var.numel(), eps, 0.0f);
  be.unary_forward(UnaryOp::Pow, rstd.data(), rstd.data(), var.numel(), -0.5f, 0.0f);
  return rstd;
}

}  // namespace

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& running_mean, const Tensor& running_var, bool training,
                    float momentum, float eps) {
  check(x.dim() == 4, [&] { return "batch_norm2d: expects x [N, C, H, W], got " + x.describe(); });
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  check_param(weight, "weight", C, x, "batch_norm2d");
  check_param(bias, "bias", C, x, "batch_norm2d");
  check_param(running_mean, "running_mean", C, x, "batch_norm2d");
  check_param(running_var, "running_var", C, x, "batch_norm2d");
  check(running_mean.defined() == running_var.defined(),
        "batch_norm2d: running_mean and running_var must be given together");
  const Backend& be = backend(x.device());
  Tensor mean, rstd;
  if (training) {
    const int64_t count = N * HW;
    check(count > 1, [&] {
      return "batch_norm2d: training needs more than one value per channel, got " + x.describe();
    });
    mean = Tensor::empty({C}, DType::F32, x.device());
    Tensor var = Tensor::empty({C}, DType::F32, x.device());
    be.channel_stats(N, C, HW, x.data(), mean.data(), var.data());
    if (running_mean.defined()) {  // PyTorch's rule, with the unbiased batch variance
      NoGradGuard no_grad;
      const float unbias = static_cast<float>(count) / static_cast<float>(count - 1);
      Tensor buffer_mean = running_mean, buffer_var = running_var;  // handles: same storage
      buffer_mean.copy_(add(mul(running_mean, 1.0f - momentum), mul(mean, momentum)));
      buffer_var.copy_(add(mul(running_var, 1.0f - momentum), mul(var, momentum * unbias)));
    }
    rstd = reciprocal_std(var, eps);
  } else {
    check(running_mean.defined(), "batch_norm2d: eval mode needs running_mean and running_var");
    mean = running_mean.clone();  // the backward must not see later updates of the buffer
    rstd = reciprocal_std(running_var, eps);
  }
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  be.batch_norm_apply(N, C, HW, x.data(), mean.data(), rstd.data(), data_or_null(weight),
                      data_or_null(bias), y.data());
  Tensor sx = x.detach(), sw = detach_or_undefined(weight);
  const bool need_x = x.requires_grad();
  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  trace_op("batch_norm2d", {x, weight, bias, running_mean, running_var}, y,
           [&] { return TraceAttrs{{training ? 1 : 0}, {eps}}; });
  return record(y, "batch_norm2d", {x, weight, bias}, [=](const Tensor& g) -> std::vector<Tensor> {
    Tensor dx, dw, db;
    if (need_x) dx = Tensor::empty(sx.shape(), DType::F32, g.device());
    if (need_w) dw = Tensor::empty({C}, DType::F32, g.device());
    if (need_b) db = Tensor::empty({C}, DType::F32, g.device());
    backend(g.device()).batch_norm_backward(N, C, HW, training, sx.data(), mean.data(),
                                            rstd.data(), data_or_null(sw), g.data(),
                                            data_or_null(dx), data_or_null(dw), data_or_null(db));
    return {dx, dw, db};
  });
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  check(x.dim() >= 1 && x.size(-1) > 0,
        [&] { return "layer_norm: needs a non-empty last dim, got " + x.describe(); });
  const int64_t D = x.size(-1), R = x.numel() / D;
  check_param(weight, "weight", D, x, "layer_norm");
  check_param(bias, "bias", D, x, "layer_norm");
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  Tensor mean = Tensor::empty({R}, DType::F32, x.device());
  Tensor rstd = Tensor::empty({R}, DType::F32, x.device());
  backend(x.device()).layer_norm_forward(R, D, eps, x.data(), data_or_null(weight),
                                         data_or_null(bias), y.data(), mean.data(), rstd.data());
  Tensor sx = x.detach(), sw = detach_or_undefined(weight);
  const bool need_x = x.requires_grad();
  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  trace_op("layer_norm", {x, weight, bias}, y, [&] { return TraceAttrs{{}, {eps}}; });
  return record(y, "layer_norm", {x, weight, bias}, [=](const Tensor& g) -> std::vector<Tensor> {
    Tensor dx, dw, db;
    if (need_x) dx = Tensor::empty(sx.shape(), DType::F32, g.device());
    if (need_w) dw = Tensor::empty({D}, DType::F32, g.device());
    if (need_b) db = Tensor::empty({D}, DType::F32, g.device());
    backend(g.device()).layer_norm_backward(R, D, sx.data(), data_or_null(sw), mean.data(),
                                            rstd.data(), g.data(), data_or_null(dx),
                                            data_or_null(dw), data_or_null(db));
    return {dx, dw, db};
  });
}

}  // namespace pk
