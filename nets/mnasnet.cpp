// MNASNet as in BRECQ (torchvision's MNASNet, 8-entry depths):
//   layers.0 conv 3x3/2, 1 BN, 2 ReLU, 3 depthwise 3x3, 4 BN, 5 ReLU,
//   6 conv 1x1, 7 BN, 8.. one nn.Sequential of _InvertedResidual per stack,
//   then conv 1x1 -> head_channels, BN, ReLU; mean over H and W;
//   classifier = Dropout + Linear.
// Standard: scale 2.0, depths = round_to_multiple_of_8(scale * base).
//
// Units: "layers.0", "layers.3", "layers.6" (before), every
// _InvertedResidual "layers.S.i" (blocks), the head conv and "classifier"
// (after).
#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "nets/families.h"

namespace pk {

namespace {

// torchvision _round_to_multiple_of(val, 8, round_up_bias=0.9): nearest
// multiple of 8 (at least 8), bumped up one step when that rounds down by
// more than 10%.
int64_t round_to_multiple_of_8(double value) {
  constexpr int64_t kDivisor = 8;
  const int64_t rounded =
      std::max(kDivisor, static_cast<int64_t>(value + kDivisor / 2.0) / kDivisor * kDivisor);
  return rounded >= 0.9 * value ? rounded : rounded + kDivisor;
}

// layers.0 pw 1x1, 1 BN, 2 ReLU, 3 dw kxk (strided), 4 BN, 5 ReLU,
// 6 pw-linear 1x1, 7 BN; residual when the shape is unchanged.
class MnasInvertedResidual : public Module {
 public:
  MnasInvertedResidual(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t expansion)
      : residual_(in == out && stride == 1) {
    const int64_t mid = in * expansion;
    auto layers = register_module("layers", std::make_shared<Module>());
    expand_ = layers->register_module("0", std::make_shared<Conv2d>(in, mid, 1, 1, 0, 1, false));
    expand_bn_ = layers->register_module("1", std::make_shared<BatchNorm2d>(mid));
    depthwise_ = layers->register_module(
        "3", std::make_shared<Conv2d>(mid, mid, kernel, stride, kernel / 2, mid, false));
    depthwise_bn_ = layers->register_module("4", std::make_shared<BatchNorm2d>(mid));
    project_ = layers->register_module("6", std::make_shared<Conv2d>(mid, out, 1, 1, 0, 1, false));
    project_bn_ = layers->register_module("7", std::make_shared<BatchNorm2d>(out));
  }

  Tensor forward(const Tensor& x) const {
    Tensor y = relu(expand_bn_->forward(expand_->forward(x)));
    y = relu(depthwise_bn_->forward(depthwise_->forward(y)));
    y = project_bn_->forward(project_->forward(y));
    return residual_ ? y + x : y;
  }

 private:
  bool residual_;
  std::shared_ptr<Conv2d> expand_, depthwise_, project_;
  std::shared_ptr<BatchNorm2d> expand_bn_, depthwise_bn_, project_bn_;
};

struct StackSpec {
  int64_t kernel, stride, expansion, repeats;
};

struct MnasNetConfig {
  std::vector<int64_t> depths;  // stem conv, stem projection, then one per stack
  std::vector<StackSpec> stacks = {{3, 2, 3, 3}, {5, 2, 3, 3}, {5, 2, 6, 3},
                                   {3, 1, 6, 2}, {5, 2, 6, 4}, {3, 1, 6, 1}};
  int64_t head_channels = 1280;
  float dropout = 0.2f;
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
};

MnasNetConfig parse_config(const std::string& name, const nlohmann::json& cfg) {
  MnasNetConfig c;
  const double scale = config_value<double>(cfg, "scale", 2.0);
  check(scale > 0.0, [&] { return name + " config: scale must be positive"; });
  for (int64_t base : {32, 16, 24, 40, 80, 96, 192, 320})
    c.depths.push_back(round_to_multiple_of_8(static_cast<double>(base) * scale));
  c.depths = config_value<std::vector<int64_t>>(cfg, "depths", c.depths);
  if (cfg.is_object() && cfg.contains("stacks")) {
    c.stacks.clear();
    for (const auto& row : config_value<std::vector<std::vector<int64_t>>>(cfg, "stacks", {})) {
      check(row.size() == 4 && row[0] > 0 && row[0] % 2 == 1 && row[1] > 0 && row[2] > 0 &&
                row[3] > 0,
            [&] {
              return name +
                     " config: each stack must be [kernel (odd), stride, expansion, repeats], "
                     "all positive";
            });
      c.stacks.push_back({row[0], row[1], row[2], row[3]});
    }
  }
  c.head_channels = config_value<int64_t>(cfg, "head_channels", c.head_channels);
  c.dropout = config_value<float>(cfg, "dropout", c.dropout);
  c.in_chans = config_value<int64_t>(cfg, "in_chans", c.in_chans);
  c.num_classes = config_value<int64_t>(cfg, "num_classes", c.num_classes);
  check(!c.stacks.empty() && c.depths.size() == c.stacks.size() + 2, [&] {
    return name + " config: 'depths' needs 2 + (number of stacks) = " +
           std::to_string(c.stacks.size() + 2) + " entries, got " + std::to_string(c.depths.size());
  });
  for (int64_t d : c.depths)
    check(d > 0, [&] { return name + " config: depths must be positive"; });
  check(c.dropout >= 0.0f && c.dropout < 1.0f,
        [&] { return name + " config: dropout must be in [0, 1)"; });
  check(c.head_channels > 0 && c.in_chans > 0 && c.num_classes > 0,
        [&] { return name + " config: head_channels, in_chans and num_classes must be positive"; });
  return c;
}

class MnasNet : public Net {
 public:
  MnasNet(const std::string& name, const MnasNetConfig& c, const Preprocess& preprocess)
      : dropout_(c.dropout) {
    model_name_ = name;
    preprocess_ = preprocess;
    num_classes_ = c.num_classes;
    auto layers = register_module("layers", std::make_shared<Module>());
    const int64_t d0 = c.depths[0], d1 = c.depths[1];
    // Stem: each conv is its own before-unit; slots 2 and 5 are ReLUs.
    const int64_t stem_out[3] = {d0, d0, d1};
    const std::shared_ptr<Conv2d> stem_layers[3] = {
        std::make_shared<Conv2d>(c.in_chans, d0, 3, 2, 1, 1, false),
        std::make_shared<Conv2d>(d0, d0, 3, 1, 1, d0, false),  // depthwise
        std::make_shared<Conv2d>(d0, d1, 1, 1, 0, 1, false)};
    for (int i = 0; i < 3; ++i) {
      stem_convs_.push_back(layers->register_module(std::to_string(3 * i), stem_layers[i]));
      stem_bns_.push_back(layers->register_module(std::to_string(3 * i + 1),
                                                  std::make_shared<BatchNorm2d>(stem_out[i])));
      add_unit("layers." + std::to_string(3 * i), UnitKind::Before);
    }

    int64_t channels = d1;
    int64_t slot = 8;
    for (size_t s = 0; s < c.stacks.size(); ++s, ++slot) {
      const StackSpec& spec = c.stacks[s];
      const int64_t out = c.depths[s + 2];
      auto stack = layers->register_module(std::to_string(slot), std::make_shared<Module>());
      for (int64_t i = 0; i < spec.repeats; ++i) {
        auto block = std::make_shared<MnasInvertedResidual>(
            channels, out, spec.kernel, i == 0 ? spec.stride : 1, spec.expansion);
        stack->register_module(std::to_string(i), block);
        add_unit("layers." + std::to_string(slot) + "." + std::to_string(i), UnitKind::Block);
        blocks_.push_back(block);
        channels = out;
      }
    }

    const std::string head = std::to_string(slot);
    head_conv_ = layers->register_module(
        head, std::make_shared<Conv2d>(channels, c.head_channels, 1, 1, 0, 1, false));
    head_bn_ = layers->register_module(std::to_string(slot + 1),
                                       std::make_shared<BatchNorm2d>(c.head_channels));
    add_unit("layers." + head, UnitKind::After);

    auto classifier = register_module("classifier", std::make_shared<Module>());
    fc_ =
        classifier->register_module("1", std::make_shared<Linear>(c.head_channels, c.num_classes));
    add_unit("classifier", UnitKind::After);
  }

  Tensor run_unit(int64_t t, const Tensor& x) override {
    check(t >= 0 && t < num_units(), [&] {
      return "MnasNet::run_unit: unit " + std::to_string(t) + " of " + std::to_string(num_units());
    });
    const int64_t n = num_units(), stem = static_cast<int64_t>(stem_convs_.size());
    if (t < stem) return stem_convs_[t]->forward(x);
    if (t == n - 2) return head_conv_->forward(x);
    if (t == n - 1) return fc_->forward(x);
    return blocks_[t - stem]->forward(x);
  }

  Tensor glue(int64_t t, const Tensor& y) override {
    if (t < 2) return relu(stem_bns_[t]->forward(y));
    if (t == 2) return stem_bns_[2]->forward(y);  // the stem projection is linear
    if (t == num_units() - 2) {
      Tensor pooled = mean(relu(head_bn_->forward(y)), {2, 3});
      return dropout(pooled, dropout_, training(), dropout_gen_);  // classifier.0
    }
    return y;
  }

 private:
  float dropout_;
  Generator dropout_gen_{0};
  std::vector<std::shared_ptr<Conv2d>> stem_convs_;
  std::vector<std::shared_ptr<BatchNorm2d>> stem_bns_;
  std::vector<std::shared_ptr<MnasInvertedResidual>> blocks_;
  std::shared_ptr<Conv2d> head_conv_;
  std::shared_ptr<BatchNorm2d> head_bn_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace

std::shared_ptr<Net> create_mnasnet(const std::string& name, const nlohmann::json& cfg) {
  return std::make_shared<MnasNet>(name, parse_config(name, cfg),
                                   parse_preprocess(cfg, Preprocess{}));
}

}  // namespace pk
