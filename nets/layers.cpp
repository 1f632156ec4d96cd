#include "nets/layers.h"

namespace pk {

// Parameters start at zero (BatchNorm/LayerNorm at identity): networks are
// filled from checkpoints or by an explicit initializer, not by constructors.
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, int64_t groups, bool has_bias, int64_t dilation)
    : HookedLayer(LayerKind::Conv) {
  check(in_channels % groups == 0 && out_channels % groups == 0, [&] {
    return "Conv2d: channels " + std::to_string(in_channels) + "->" + std::to_string(out_channels) +
           " not divisible by groups " + std::to_string(groups);
  });
  weight = register_parameter("weight",
                              Tensor::zeros({out_channels, in_channels / groups, kernel, kernel}));
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_channels}));
  options.stride_h = options.stride_w = stride;
  options.pad_h = options.pad_w = padding;
  options.dil_h = options.dil_w = dilation;
  options.groups = groups;
}

Tensor Conv2d::forward(const Tensor& x) const {
  return report_output(conv2d(apply_operand(0, x), apply_weight(weight), bias, options));
}

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias)
    : HookedLayer(LayerKind::Linear) {
  weight = register_parameter("weight", Tensor::zeros({out_features, in_features}));
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
}

Tensor Linear::forward(const Tensor& x) const {
  return report_output(linear(apply_operand(0, x), apply_weight(weight), bias));
}

Tensor MatMul::forward(const Tensor& a, const Tensor& b) const {
  return report_output(matmul(apply_operand(0, a), apply_operand(1, b)));
}

BatchNorm2d::BatchNorm2d(int64_t channels, float eps_, float momentum_)
    : eps(eps_), momentum(momentum_) {
  weight = register_parameter("weight", Tensor::ones({channels}));
  bias = register_parameter("bias", Tensor::zeros({channels}));
  running_mean = register_buffer("running_mean", Tensor::zeros({channels}));
  running_var = register_buffer("running_var", Tensor::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", Tensor::from_int64({0}, {}));
}

Tensor BatchNorm2d::forward(const Tensor& x) const {
  if (folded) return x;
  if (training()) {
    Tensor counter = num_batches_tracked;
    counter.copy_(Tensor::from_int64({counter.to_int64_vector()[0] + 1}, {}, counter.device()));
  }
  return batch_norm2d(x, weight, bias, running_mean, running_var, training(), momentum, eps);
}

LayerNorm::LayerNorm(int64_t dim, float eps_) : eps(eps_) {
  weight = register_parameter("weight", Tensor::ones({dim}));
  bias = register_parameter("bias", Tensor::zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

}  // namespace pk
