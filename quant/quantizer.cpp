#include "quant/quantizer.h"

#include <cmath>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops_quant.h"
#include "kernels/cpu/unfused_float.h"

namespace pk {

InitMethod parse_init_method(const std::string& name) {
  if (name == "minmax") return InitMethod::MinMax;
  if (name == "minmax_scale") return InitMethod::MinMaxScale;
  if (name == "mse") return InitMethod::Mse;
  throw std::invalid_argument("unknown init method '" + name + "' (minmax, minmax_scale or mse)");
}

const char* init_method_name(InitMethod method) {
  switch (method) {
    case InitMethod::MinMax: return "minmax";
    case InitMethod::MinMaxScale: return "minmax_scale";
    case InitMethod::Mse: return "mse";
  }
  return "?";
}

UniformQuantizer::UniformQuantizer(int bits_, bool per_channel_, int64_t axis_)
    : bits(bits_), per_channel(per_channel_), axis(axis_) {}

namespace {

// Scale and zero point of a range, with a floor on the scale so that a
// constant channel does not divide by zero.
void range_to_params(const cpu::ScaledRange& range, float& d, float& z) {
  d = range.step;
  if (!(d > 1e-8f)) d = 1e-8f;
  z = std::nearbyint(-range.min / d);
}

}  // namespace

void UniformQuantizer::init(const Tensor& x, InitMethod method) {
  NoGradGuard guard;
  const float qmax = static_cast<float>((1 << bits) - 1);
  ChannelRange range = channel_range(x, axis, per_channel);
  const size_t C = range.min.size();
  std::vector<float> d(C), z(C);
  if (method == InitMethod::Mse) {
    // 80 shrink factors of the raw range; the first best score wins.
    constexpr int64_t kCandidates = 80;
    std::vector<double> scores = quant_range_scores(x, axis, per_channel, range, kCandidates, bits, 2.4f);
    for (size_t c = 0; c < C; ++c) {
      int64_t best = 0;
      for (int64_t k = 1; k < kCandidates; ++k)
        if (scores[c * kCandidates + k] < scores[c * kCandidates + best]) best = k;
      range_to_params(cpu::scaled_range(range.min[c], range.max[c], cpu::range_shrink(best), qmax),
                      d[c], z[c]);
    }
  } else {
    // minmax includes 0 in the range; minmax_scale then shrinks it by (n+2)/8.
    float factor = method == InitMethod::MinMaxScale ? static_cast<float>(bits + 2) / 8.0f : 1.0f;
    for (size_t c = 0; c < C; ++c) {
      const float lo = std::min(range.min[c], 0.0f), hi = std::max(range.max[c], 0.0f);
      range_to_params(cpu::scaled_range(lo, hi, factor, qmax), d[c], z[c]);
    }
  }
  int64_t n = static_cast<int64_t>(C);
  scale = Tensor::from_vector(d, {n}, x.device());
  zero_point = Tensor::from_vector(z, {n}, x.device());
}

Tensor UniformQuantizer::forward(const Tensor& x, const Tensor& scale_copy) const {
  check(initialized(), "quantizer used before initialization");
  return fake_quantize(x, scale_copy, zero_point, axis, bits);
}

void WeightQuantizer::start_adaround(const Tensor& w) {
  check(initialized(), "AdaRound needs an initialized weight quantizer");
  alpha = adaround_init_alpha(w, scale);
  alpha.set_requires_grad(true);
  rounding = Rounding::Soft;
}

Tensor WeightQuantizer::forward(const Tensor& w) const {
  check(initialized(), "weight quantizer used before initialization");
  if (rounding == Rounding::Nearest) return fake_quantize(w, scale, zero_point, 0, bits);
  return adaround_quantize(w, alpha, scale, zero_point, bits, rounding == Rounding::Hard);
}

Tensor WeightQuantizer::codes(const Tensor& w) const {
  NoGradGuard guard;
  Tensor q = forward(w);
  Shape param_shape(w.dim(), 1);
  if (scale.numel() > 1) param_shape[0] = scale.numel();
  // q = (level - z) * D exactly, so level = round(q / D) + z.
  return add(round_ste(div(q, reshape(scale, param_shape))), reshape(zero_point, param_shape));
}

}  // namespace pk
