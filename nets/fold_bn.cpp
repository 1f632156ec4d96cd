#include "nets/fold_bn.h"

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"

namespace pk {

int64_t fold_batch_norms(Net& net) {
  NoGradGuard guard;
  int64_t folded = 0;
  // The layer that last produced an output before each BatchNorm, in
  // registration order (containers are skipped: they come before their
  // children in named_modules()).
  Conv2d* previous_conv = nullptr;
  for (auto& [name, module] : net.named_modules()) {
    if (auto* conv = dynamic_cast<Conv2d*>(module)) {
      previous_conv = conv;
      continue;
    }
    auto* bn = dynamic_cast<BatchNorm2d*>(module);
    if (!bn) {
      if (dynamic_cast<HookedLayer*>(module) || dynamic_cast<LayerNorm*>(module))
        previous_conv = nullptr;
      continue;
    }
    const int64_t channels = bn->weight.numel();
    check(previous_conv && previous_conv->weight.size(0) == channels, [&, &name = name] {
      return "--fold_bn: BatchNorm2d " + name + " does not directly follow a Conv2d with " +
             std::to_string(channels) + " output channels";
    });
    Conv2d& conv = *previous_conv;
    previous_conv = nullptr;
    if (!conv.bias.defined())
      conv.bias = conv.register_parameter("bias", Tensor::zeros({channels}, conv.weight.device()));
    const std::vector<float> gamma = bn->weight.to_vector(), beta = bn->bias.to_vector(),
                             mean = bn->running_mean.to_vector(),
                             var = bn->running_var.to_vector();
    std::vector<float> w = conv.weight.to_vector(), b = conv.bias.to_vector();
    const int64_t per_channel = conv.weight.numel() / channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float factor = gamma[c] / std::sqrt(var[c] + bn->eps);
      for (int64_t i = 0; i < per_channel; ++i) w[c * per_channel + i] *= factor;
      b[c] = beta[c] + (b[c] - mean[c]) * factor;
    }
    conv.weight.copy_(Tensor::from_vector(w, conv.weight.shape(), conv.weight.device()));
    conv.bias.copy_(Tensor::from_vector(b, conv.bias.shape(), conv.bias.device()));
    bn->folded = true;
    ++folded;
  }
  return folded;
}

}  // namespace pk
