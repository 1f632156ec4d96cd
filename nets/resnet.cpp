// ResNet-18/50 as in BRECQ (torchvision layout and parameter names):
// conv1 7x7/2 + bn1 + relu + maxpool 3x3/2, four stages layer1..layer4 of
// BasicBlock or Bottleneck, global average pool, fc.
//
// Units: "conv1" (before), every block "layerS.i", "fc" (after).
#include <nlohmann/json.hpp>

#include "nets/families.h"

namespace pk {

namespace {

std::shared_ptr<Conv2d> conv_no_bias(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return std::make_shared<Conv2d>(in, out, kernel, stride, kernel / 2, 1, /*bias=*/false);
}

// A residual block plus the downsample path (conv 1x1 with the block's
// stride, then BN) when the shortcut changes shape.
class ResNetBlock : public Module {
 public:
  virtual Tensor forward(const Tensor& x) const = 0;

 protected:
  void add_downsample(int64_t in, int64_t out, int64_t stride) {
    if (stride == 1 && in == out) return;
    auto seq = register_module("downsample", std::make_shared<Module>());
    downsample_conv_ = seq->register_module("0", conv_no_bias(in, out, 1, stride));
    downsample_bn_ = seq->register_module("1", std::make_shared<BatchNorm2d>(out));
  }
  Tensor shortcut(const Tensor& x) const {
    return downsample_conv_ ? downsample_bn_->forward(downsample_conv_->forward(x)) : x;
  }

 private:
  std::shared_ptr<Conv2d> downsample_conv_;
  std::shared_ptr<BatchNorm2d> downsample_bn_;
};

class BasicBlock : public ResNetBlock {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in, int64_t planes, int64_t stride) {
    conv1_ = register_module("conv1", conv_no_bias(in, planes, 3, stride));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
    conv2_ = register_module("conv2", conv_no_bias(planes, planes, 3, 1));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
    add_downsample(in, planes, stride);
  }
  Tensor forward(const Tensor& x) const override {
    Tensor y = relu(bn1_->forward(conv1_->forward(x)));
    y = bn2_->forward(conv2_->forward(y));
    return relu(y + shortcut(x));
  }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
};

// Stride on the 3x3 conv (torchvision's "ResNet v1.5", as BRECQ).
class Bottleneck : public ResNetBlock {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in, int64_t planes, int64_t stride) {
    const int64_t out = planes * kExpansion;
    conv1_ = register_module("conv1", conv_no_bias(in, planes, 1, 1));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
    conv2_ = register_module("conv2", conv_no_bias(planes, planes, 3, stride));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
    conv3_ = register_module("conv3", conv_no_bias(planes, out, 1, 1));
    bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(out));
    add_downsample(in, out, stride);
  }
  Tensor forward(const Tensor& x) const override {
    Tensor y = relu(bn1_->forward(conv1_->forward(x)));
    y = relu(bn2_->forward(conv2_->forward(y)));
    y = bn3_->forward(conv3_->forward(y));
    return relu(y + shortcut(x));
  }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
};

struct ResNetConfig {
  bool bottleneck = false;
  std::vector<int64_t> depths;        // blocks per stage
  int64_t width = 64;                 // stem channels
  std::vector<int64_t> stage_planes;  // block planes per stage (before expansion)
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
};

ResNetConfig parse_config(const std::string& name, const nlohmann::json& cfg) {
  ResNetConfig c;
  std::string block = name == "resnet50" ? "Bottleneck" : "BasicBlock";
  c.depths =
      name == "resnet50" ? std::vector<int64_t>{3, 4, 6, 3} : std::vector<int64_t>{2, 2, 2, 2};
  block = config_value<std::string>(cfg, "block", block);
  check(block == "BasicBlock" || block == "Bottleneck", [&] {
    return name + " config: block must be BasicBlock or Bottleneck, got '" + block + "'";
  });
  c.bottleneck = block == "Bottleneck";
  const int64_t expansion = c.bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion;
  check(config_value<int64_t>(cfg, "block_expansion", expansion) == expansion,
        [&] { return name + " config: block_expansion does not match block " + block; });
  check(!config_value<bool>(cfg, "deep_stem", false), [&] {
    return name + " config: deep_stem is not supported (BRECQ's ResNets use the 7x7 stem)";
  });
  c.depths = config_value<std::vector<int64_t>>(cfg, "layers", c.depths);
  c.width = config_value<int64_t>(cfg, "width", c.width);
  c.stage_planes = config_value<std::vector<int64_t>>(
      cfg, "stage_planes", {c.width, 2 * c.width, 4 * c.width, 8 * c.width});
  c.in_chans = config_value<int64_t>(cfg, "in_chans", c.in_chans);
  c.num_classes = config_value<int64_t>(cfg, "num_classes", c.num_classes);
  check(!c.depths.empty() && c.depths.size() == c.stage_planes.size(), [&] {
    return name + " config: 'layers' and 'stage_planes' need the same (non-zero) number of stages";
  });
  for (size_t s = 0; s < c.depths.size(); ++s)
    check(c.depths[s] > 0 && c.stage_planes[s] > 0, [&] {
      return name + " config: stage " + std::to_string(s + 1) + " needs positive depth and planes";
    });
  check(c.width > 0 && c.in_chans > 0 && c.num_classes > 0,
        [&] { return name + " config: width, in_chans and num_classes must be positive"; });
  return c;
}

class ResNet : public Net {
 public:
  ResNet(const std::string& name, const ResNetConfig& c, const Preprocess& preprocess) {
    model_name_ = name;
    preprocess_ = preprocess;
    num_classes_ = c.num_classes;
    conv1_ = register_module("conv1", conv_no_bias(c.in_chans, c.width, 7, 2));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(c.width));
    add_unit("conv1", UnitKind::Before);
    int64_t channels = c.width;
    for (size_t s = 0; s < c.depths.size(); ++s) {
      const std::string stage = "layer" + std::to_string(s + 1);
      auto stage_module = register_module(stage, std::make_shared<Module>());
      for (int64_t i = 0; i < c.depths[s]; ++i) {
        const int64_t stride = (s > 0 && i == 0) ? 2 : 1;
        std::shared_ptr<ResNetBlock> block;
        if (c.bottleneck)
          block = std::make_shared<Bottleneck>(channels, c.stage_planes[s], stride);
        else
          block = std::make_shared<BasicBlock>(channels, c.stage_planes[s], stride);
        channels = c.stage_planes[s] * (c.bottleneck ? Bottleneck::kExpansion : 1);
        stage_module->register_module(std::to_string(i), block);
        add_unit(stage + "." + std::to_string(i), UnitKind::Block);
        blocks_.push_back(block);
      }
    }
    fc_ = register_module("fc", std::make_shared<Linear>(channels, c.num_classes));
    add_unit("fc", UnitKind::After);
  }

  Tensor run_unit(int64_t t, const Tensor& x) override {
    check(t >= 0 && t < num_units(), [&] {
      return "ResNet::run_unit: unit " + std::to_string(t) + " of " + std::to_string(num_units());
    });
    if (t == 0) return conv1_->forward(x);
    if (t == num_units() - 1) return fc_->forward(x);
    return blocks_[t - 1]->forward(x);
  }

  Tensor glue(int64_t t, const Tensor& y) override {
    if (t == 0) return max_pool2d(relu(bn1_->forward(y)), 3, 2, 1);
    if (t == num_units() - 2) return flatten(adaptive_avg_pool2d(y, 1, 1), 1);
    return y;
  }

 private:
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::vector<std::shared_ptr<ResNetBlock>> blocks_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace

std::shared_ptr<Net> create_resnet(const std::string& name, const nlohmann::json& cfg) {
  return std::make_shared<ResNet>(name, parse_config(name, cfg),
                                  parse_preprocess(cfg, Preprocess{}));
}

}  // namespace pk
