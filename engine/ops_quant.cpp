#include "engine/ops_quant.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_util.h"
#include "engine/trace.h"

namespace pk {

namespace {

AxisGeom quant_geometry(const Tensor& x, int64_t axis, bool per_channel) {
  if (!per_channel) return {1, 1, x.numel()};
  int64_t d = wrap_dim(axis, x.dim(), "quantize");
  AxisGeom g{1, x.size(d), 1};
  for (int64_t i = 0; i < d; ++i) g.outer *= x.size(i);
  for (int64_t i = d + 1; i < x.dim(); ++i) g.inner *= x.size(i);
  return g;
}

float max_level(int bits) {
  check(bits >= 1 && bits <= 16,
        [&] { return "quantizer bits must be in [1, 16], got " + std::to_string(bits); });
  return static_cast<float>((1 << bits) - 1);
}

void check_params(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                  const AxisGeom& g, const char* op) {
  check(scale.numel() == g.dim && zero_point.numel() == g.dim, [&] {
    return std::string(op) + ": scale " + scale.describe() + " / zero point " +
           zero_point.describe() + " do not fit " + x.describe();
  });
  check_same_device(x, scale, op);
}

}  // namespace

Tensor fake_quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                     int bits) {
  AxisGeom g = quant_geometry(x, axis, scale.numel() > 1);
  check_params(x, scale, zero_point, g, "fake_quantize");
  const float qmax = max_level(bits);
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  backend(x.device()).fake_quant_forward(g, x.data(), scale.data(), zero_point.data(), qmax,
                                         y.data());
  trace_op("fake_quantize", {x, scale, zero_point}, y,
           [&] { return TraceAttrs{{axis, bits}, {}}; });
  Tensor sx = x.detach(), ss = scale.detach(), sz = zero_point.detach();
  bool need_x = x.requires_grad(), need_s = scale.requires_grad();
  return record(y, "fake_quantize", {x, scale},
                [=](const Tensor& gy) -> std::vector<Tensor> {
                  Tensor dx, ds;
                  if (need_x) dx = Tensor::empty(sx.shape(), DType::F32, gy.device());
                  if (need_s) ds = Tensor::empty(ss.shape(), DType::F32, gy.device());
                  backend(gy.device()).fake_quant_backward(
                      g, sx.data(), ss.data(), sz.data(), qmax, gy.data(),
                      need_x ? dx.data() : nullptr, need_s ? ds.data() : nullptr);
                  return {dx, ds};
                });
}

Tensor adaround_quantize(const Tensor& w, const Tensor& alpha, const Tensor& scale,
                         const Tensor& zero_point, int bits, bool hard) {
  check(alpha.shape() == w.shape(), [&] {
    return "adaround: alpha " + alpha.describe() + " does not match weight " + w.describe();
  });
  AxisGeom g = quant_geometry(w, 0, scale.numel() > 1);
  check_params(w, scale, zero_point, g, "adaround_quantize");
  const float qmax = max_level(bits);
  Tensor y = Tensor::empty(w.shape(), DType::F32, w.device());
  backend(w.device()).adaround_forward(g, w.data(), alpha.data(), scale.data(), zero_point.data(),
                                       qmax, hard, y.data());
  trace_op("adaround_quantize", {w, alpha, scale, zero_point}, y,
           [&] { return TraceAttrs{{bits, hard ? 1 : 0}, {}}; });
  if (hard) return y;
  Tensor sw = w.detach(), sa = alpha.detach(), ss = scale.detach(), sz = zero_point.detach();
  return record(y, "adaround_quantize", {alpha}, [=](const Tensor& gy) -> std::vector<Tensor> {
    Tensor da = Tensor::empty(sa.shape(), DType::F32, gy.device());
    backend(gy.device()).adaround_backward(g, sw.data(), sa.data(), ss.data(), sz.data(), qmax,
                                           gy.data(), da.data());
    return {da};
  });
}

Tensor adaround_round_loss(const Tensor& alpha, float beta, float weight) {
  Tensor value = Tensor::empty({}, DType::F32, alpha.device());
  Tensor dalpha;
  bool need = alpha.requires_grad() && grad_enabled();
  // The gradient comes out of the same pass; it is kept for backward.
  if (need) dalpha = Tensor::empty(alpha.shape(), DType::F32, alpha.device());
  backend(alpha.device()).adaround_regularizer(alpha.numel(), alpha.data(), beta, weight,
                                               value.data(), need ? dalpha.data() : nullptr);
  if (!need) return value;
  return record(value, "adaround_round_loss", {alpha},
                [dalpha](const Tensor& g) -> std::vector<Tensor> { return {mul(dalpha, g)}; });
}

Tensor adaround_init_alpha(const Tensor& w, const Tensor& scale) {
  NoGradGuard guard;
  constexpr float kGamma = -0.1f, kZeta = 1.1f;
  Shape scale_shape(w.dim(), 1);  // [O, 1, 1, 1] per channel, broadcast per tensor
  if (scale.numel() > 1) scale_shape[0] = scale.numel();
  Tensor scaled = div(w, reshape(scale, scale_shape));
  Tensor rest = sub(scaled, floor_ste(scaled));  // fractional part r in [0, 1)
  // alpha = -log((zeta - gamma) / (r - gamma) - 1)
  Tensor ratio = div(Tensor::full(rest.shape(), kZeta - kGamma, w.device()), add(rest, -kGamma));
  return neg(log(add(ratio, -1.0f)));
}

ChannelRange channel_range(const Tensor& x, int64_t axis, bool per_channel) {
  AxisGeom g = quant_geometry(x, axis, per_channel);
  Tensor mn = Tensor::empty({g.dim}, DType::F32, x.device());
  Tensor mx = Tensor::empty({g.dim}, DType::F32, x.device());
  backend(x.device()).channel_minmax(g, x.data(), mn.data(), mx.data());
  return {mn.to_vector(), mx.to_vector()};
}

std::vector<double> quant_range_scores(const Tensor& x, int64_t axis, bool per_channel,
                                       const ChannelRange& range, int64_t n_candidates, int bits,
                                       float p) {
  AxisGeom g = quant_geometry(x, axis, per_channel);
  Tensor lo = Tensor::from_vector(range.min, {g.dim}, x.device());
  Tensor hi = Tensor::from_vector(range.max, {g.dim}, x.device());
  std::vector<double> scores(static_cast<size_t>(g.dim * n_candidates));
  // Tensors hold float32 or int64 only, so the doubles live in a bare storage.
  Storage device_scores(scores.size() * sizeof(double), x.device());
  auto* out = static_cast<double*>(device_scores.data);
  backend(x.device()).quant_range_scores(g, x.data(), lo.data(), hi.data(), n_candidates,
                                         max_level(bits), p, out);
  backend(x.device()).copy_to_host(scores.data(), out, scores.size() * sizeof(double));
  return scores;
}

}  // namespace pk
