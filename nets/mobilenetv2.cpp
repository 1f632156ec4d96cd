// MobileNetV2 as in BRECQ: channels int(c * width_mult) (no rounding to a
// multiple of 8), last_channel int(1280 * width_mult) only when widening,
// features.0 = conv 3x3/2 + BN + ReLU6, InvertedResidual blocks
// features.1..N, features.N+1 = conv 1x1 + BN + ReLU6, mean over H and W,
// classifier = Dropout + Linear.
//
// Units: "features.0" (before), every InvertedResidual (blocks),
// "features.N+1" and "classifier" (after).
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "nets/families.h"

namespace pk {

namespace {

// conv.N numbering follows BRECQ's nn.Sequential, ReLU6 slots included:
// expand_ratio 1: 0 dw, 1 BN, 2 ReLU6, 3 pw-linear, 4 BN;
// otherwise:      0 pw, 1 BN, 2 ReLU6, 3 dw, 4 BN, 5 ReLU6, 6 pw-linear, 7 BN.
class InvertedResidual : public Module {
 public:
  InvertedResidual(int64_t in, int64_t out, int64_t stride, double expand_ratio)
      : residual_(stride == 1 && in == out) {
    const int64_t hidden = static_cast<int64_t>(std::nearbyint(in * expand_ratio));
    auto conv = register_module("conv", std::make_shared<Module>());
    int slot = 0;
    auto add = [&](std::shared_ptr<Conv2d> layer, int64_t channels, bool relu6_after) {
      conv->register_module(std::to_string(slot), layer);
      convs_.push_back(layer);
      bns_.push_back(
          conv->register_module(std::to_string(slot + 1), std::make_shared<BatchNorm2d>(channels)));
      slot += relu6_after ? 3 : 2;
    };
    if (expand_ratio != 1.0)
      add(std::make_shared<Conv2d>(in, hidden, 1, 1, 0, 1, false), hidden, true);
    add(std::make_shared<Conv2d>(hidden, hidden, 3, stride, 1, hidden, false), hidden, true);
    add(std::make_shared<Conv2d>(hidden, out, 1, 1, 0, 1, false), out, false);
  }

  Tensor forward(const Tensor& x) const {
    Tensor y = x;
    for (size_t i = 0; i < convs_.size(); ++i) {
      y = bns_[i]->forward(convs_[i]->forward(y));
      if (i + 1 < convs_.size()) y = relu6(y);  // the last (pw-linear) has no activation
    }
    return residual_ ? x + y : y;
  }

 private:
  bool residual_;
  std::vector<std::shared_ptr<Conv2d>> convs_;
  std::vector<std::shared_ptr<BatchNorm2d>> bns_;
};

struct MobileNetV2Config {
  double width_mult = 1.0;
  int64_t last_channel = 1280;
  // [t (expand ratio), c (channels), n (repeats), s (stride of the first)]
  std::vector<std::vector<double>> setting = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2},
                                              {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2},
                                              {6, 320, 1, 1}};
  float dropout = 0.0f;
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
};

MobileNetV2Config parse_config(const std::string& name, const nlohmann::json& cfg) {
  MobileNetV2Config c;
  c.width_mult = config_value<double>(cfg, "width_mult", c.width_mult);
  check(c.width_mult > 0.0, [&] { return name + " config: width_mult must be positive"; });
  const int64_t widened = static_cast<int64_t>(1280 * c.width_mult);
  c.last_channel = config_value<int64_t>(cfg, "last_channel", c.width_mult > 1.0 ? widened : 1280);
  c.setting =
      config_value<std::vector<std::vector<double>>>(cfg, "inverted_residual_setting", c.setting);
  c.dropout = config_value<float>(cfg, "dropout", c.dropout);
  c.in_chans = config_value<int64_t>(cfg, "in_chans", c.in_chans);
  c.num_classes = config_value<int64_t>(cfg, "num_classes", c.num_classes);
  check(!c.setting.empty(), [&] { return name + " config: inverted_residual_setting is empty"; });
  for (const auto& row : c.setting)
    check(row.size() == 4 && row[0] > 0 && row[1] >= 1 && row[2] >= 1 && row[3] >= 1 &&
              row[1] == std::floor(row[1]) && row[2] == std::floor(row[2]) &&
              row[3] == std::floor(row[3]),
          [&] {
            return name +
                   " config: each inverted_residual_setting row must be [t, c, n, s] with "
                   "t > 0 and positive integers c, n, s";
          });
  check(c.dropout >= 0.0f && c.dropout < 1.0f,
        [&] { return name + " config: dropout must be in [0, 1)"; });
  check(c.last_channel > 0 && c.in_chans > 0 && c.num_classes > 0,
        [&] { return name + " config: last_channel, in_chans and num_classes must be positive"; });
  return c;
}

class MobileNetV2 : public Net {
 public:
  MobileNetV2(const std::string& name, const MobileNetV2Config& c, const Preprocess& preprocess)
      : dropout_(c.dropout) {
    model_name_ = name;
    preprocess_ = preprocess;
    num_classes_ = c.num_classes;
    auto features = register_module("features", std::make_shared<Module>());

    int64_t channels = static_cast<int64_t>(32 * c.width_mult);
    auto stem = features->register_module("0", std::make_shared<Module>());
    stem_conv_ = stem->register_module(
        "0", std::make_shared<Conv2d>(c.in_chans, channels, 3, 2, 1, 1, false));
    stem_bn_ = stem->register_module("1", std::make_shared<BatchNorm2d>(channels));
    add_unit("features.0", UnitKind::Before);

    int64_t index = 1;
    for (const auto& row : c.setting) {
      const int64_t out = static_cast<int64_t>(row[1] * c.width_mult);
      for (int64_t i = 0; i < static_cast<int64_t>(row[2]); ++i, ++index) {
        const int64_t stride = i == 0 ? static_cast<int64_t>(row[3]) : 1;
        auto block = features->register_module(
            std::to_string(index),
            std::make_shared<InvertedResidual>(channels, out, stride, row[0]));
        add_unit("features." + std::to_string(index), UnitKind::Block);
        blocks_.push_back(block);
        channels = out;
      }
    }

    const std::string head = std::to_string(index);
    auto head_module = features->register_module(head, std::make_shared<Module>());
    head_conv_ = head_module->register_module(
        "0", std::make_shared<Conv2d>(channels, c.last_channel, 1, 1, 0, 1, false));
    head_bn_ = head_module->register_module("1", std::make_shared<BatchNorm2d>(c.last_channel));
    add_unit("features." + head, UnitKind::After);

    auto classifier = register_module("classifier", std::make_shared<Module>());
    fc_ = classifier->register_module("1", std::make_shared<Linear>(c.last_channel, c.num_classes));
    add_unit("classifier", UnitKind::After);
  }

  // torchvision's MobileNetV2 (the same network at width 1.0) nests the
  // conv and BN of each expand and depthwise step in a Sequential of its own
  // ("conv.<i>.0", "conv.<i>.1") and numbers the projection conv and its BN
  // after them ("conv.<g>", "conv.<g + 1>" with g such groups); BRECQ counts
  // the ReLU6 slots instead (see InvertedResidual).
  TensorMap adapt_checkpoint(TensorMap tensors) const override {
    auto nested = [](const std::string& key, int64_t& block, int64_t& group, int64_t& layer,
                     std::string& param) {
      std::string rest;
      return split_indexed_name(key, "features.", block, rest) &&
             split_indexed_name(rest, "conv.", group, rest) &&
             split_indexed_name(rest, "", layer, param);
    };
    std::map<int64_t, int64_t> groups;  // block -> number of nested groups
    for (const auto& [name, t] : tensors) {
      int64_t block = 0, group = 0, layer = 0;
      std::string param;
      if (nested(name, block, group, layer, param))
        groups[block] = std::max(groups[block], group + 1);
    }
    if (groups.empty()) return tensors;
    TensorMap out;
    for (auto& [name, t] : tensors) {
      int64_t block = 0, group = 0, layer = 0;
      std::string rest, param, key = name;
      if (nested(name, block, group, layer, param)) {
        key = "features." + std::to_string(block) + ".conv." + std::to_string(3 * group + layer) +
              "." + param;
      } else if (split_indexed_name(name, "features.", block, rest) && groups.count(block) &&
                 split_indexed_name(rest, "conv.", layer, param)) {
        const int64_t g = groups[block];
        key = "features." + std::to_string(block) + ".conv." + std::to_string(3 * g + layer - g) +
              "." + param;
      }
      out.emplace(std::move(key), t);
    }
    return out;
  }

  Tensor run_unit(int64_t t, const Tensor& x) override {
    check(t >= 0 && t < num_units(), [&] {
      return "MobileNetV2::run_unit: unit " + std::to_string(t) + " of " +
             std::to_string(num_units());
    });
    const int64_t n = num_units();
    if (t == 0) return stem_conv_->forward(x);
    if (t == n - 2) return head_conv_->forward(x);
    if (t == n - 1) return fc_->forward(x);
    return blocks_[t - 1]->forward(x);
  }

  Tensor glue(int64_t t, const Tensor& y) override {
    if (t == 0) return relu6(stem_bn_->forward(y));
    if (t == num_units() - 2) {
      Tensor pooled = mean(relu6(head_bn_->forward(y)), {2, 3});
      return dropout(pooled, dropout_, training(), dropout_gen_);  // classifier.0
    }
    return y;
  }

 private:
  float dropout_;
  Generator dropout_gen_{0};
  std::shared_ptr<Conv2d> stem_conv_, head_conv_;
  std::shared_ptr<BatchNorm2d> stem_bn_, head_bn_;
  std::vector<std::shared_ptr<InvertedResidual>> blocks_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace

std::shared_ptr<Net> create_mobilenetv2(const std::string& name, const nlohmann::json& cfg) {
  return std::make_shared<MobileNetV2>(name, parse_config(name, cfg),
                                       parse_preprocess(cfg, Preprocess{}));
}

}  // namespace pk
