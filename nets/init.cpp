#include "nets/init.h"

#include <cmath>
#include <set>

#include "engine/rng.h"
#include "nets/layers.h"

namespace pk {

namespace {

void fill_normal(Tensor t, Generator& gen, float stddev) {
  t.copy_(gen.normal_tensor(t.shape(), 0.0f, stddev, t.device()));
}

void fill_kaiming(Tensor weight, Generator& gen) {
  const int64_t fan_in = weight.numel() / weight.size(0);  // in/groups * kh * kw, or in
  fill_normal(weight, gen, static_cast<float>(std::sqrt(2.0 / static_cast<double>(fan_in))));
}

}  // namespace

void init_random(Module& net, uint64_t seed) {
  Generator gen(seed);
  std::set<TensorImpl*> done;  // parameters filled by their layer's rule
  auto set = [&](Tensor t, float value) {
    if (!t.defined()) return;
    t.fill_(value);
    done.insert(t.impl());
  };
  for (auto& [name, module] : net.named_modules()) {
    if (auto* conv = dynamic_cast<Conv2d*>(module)) {
      fill_kaiming(conv->weight, gen);
      done.insert(conv->weight.impl());
      set(conv->bias, 0.0f);
    } else if (auto* fc = dynamic_cast<Linear*>(module)) {
      fill_kaiming(fc->weight, gen);
      done.insert(fc->weight.impl());
      set(fc->bias, 0.0f);
    } else if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) {
      set(bn->weight, 1.0f);
      set(bn->bias, 0.0f);
      bn->running_mean.fill_(0.0f);
      bn->running_var.fill_(1.0f);
      bn->num_batches_tracked.copy_(Tensor::from_int64({0}, {}, bn->num_batches_tracked.device()));
    } else if (auto* ln = dynamic_cast<LayerNorm*>(module)) {
      set(ln->weight, 1.0f);
      set(ln->bias, 0.0f);
    }
  }
  for (auto& [name, param] : net.named_parameters())
    if (!done.count(param.impl())) fill_normal(param, gen, 0.02f);
}

}  // namespace pk
