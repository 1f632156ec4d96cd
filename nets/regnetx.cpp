// RegNetX as in BRECQ (pycls AnyNet with ResBottleneckBlock, no SE):
// stem = conv 3x3/2 + BN + ReLU; stages s1..s4 of blocks b1..bN; head =
// global average pool + fc. Stage widths, depths and group widths come from
// pycls's generate_regnet + adjust_ws_gs_comp, or from explicit "stages".
//
// Units: "stem" (before, stem.conv), every block "sS.bI", "head" (after,
// head.fc).
#include <cmath>
#include <nlohmann/json.hpp>

#include "nets/families.h"

namespace pk {

namespace {

struct StageSpec {
  std::string name;  // "s1", ...
  int64_t depth, width, stride, group_width;
};

struct RegNetParams {  // pycls REGNET.{WA, W0, WM, DEPTH, GROUP_W}
  double wa, w0, wm;
  int64_t depth, group_width;
};

// Python's round(): halves go to the even neighbour, as numpy's np.round.
double round_half_even(double v) { return std::nearbyint(v); }

// pycls generate_regnet (quantum 8) + get_stages_from_blocks +
// adjust_ws_gs_comp: per-block widths w0 * wm^round(log_wm((i*wa + w0)/w0)),
// rounded to multiples of 8, grouped into stages of equal width; then each
// stage's group width is capped at its bottleneck width and the bottleneck
// width rounded to a multiple of the group width.
std::vector<StageSpec> generate_stages(const RegNetParams& p, double bottleneck_mult) {
  constexpr double kQuantum = 8;
  check(p.wa >= 0 && p.w0 > 0 && p.wm > 1 && std::fmod(p.w0, kQuantum) == 0 && p.depth > 0 &&
            p.group_width > 0,
        "regnet_config: need WA >= 0, W0 > 0 and a multiple of 8, WM > 1, DEPTH > 0, GROUP_W > 0");
  std::vector<int64_t> block_widths;
  for (int64_t i = 0; i < p.depth; ++i) {
    const double continuous = static_cast<double>(i) * p.wa + p.w0;
    const double k = round_half_even(std::log(continuous / p.w0) / std::log(p.wm));
    const double w = p.w0 * std::pow(p.wm, k);
    block_widths.push_back(static_cast<int64_t>(round_half_even(w / kQuantum) * kQuantum));
  }
  std::vector<StageSpec> stages;
  for (int64_t w : block_widths) {
    if (!stages.empty() && stages.back().width == w) {
      ++stages.back().depth;
    } else {
      stages.push_back({"s" + std::to_string(stages.size() + 1), 1, w, 2, p.group_width});
    }
  }
  for (auto& s : stages) {
    const int64_t bottleneck = static_cast<int64_t>(s.width * bottleneck_mult);
    s.group_width = std::min(s.group_width, bottleneck);
    const int64_t quantized = static_cast<int64_t>(
        round_half_even(static_cast<double>(bottleneck) / s.group_width) * s.group_width);
    s.width = static_cast<int64_t>(quantized / bottleneck_mult);
  }
  return stages;
}

int64_t bottleneck_width(int64_t width, double bottleneck_mult) {
  return static_cast<int64_t>(round_half_even(width * bottleneck_mult));
}

struct RegNetConfig {
  std::vector<StageSpec> stages;
  int64_t stem_width = 32;
  double bottleneck_mult = 1.0;
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
};

RegNetConfig parse_config(const std::string& name, const nlohmann::json& cfg) {
  RegNetConfig c;
  RegNetParams params = name == "regnetx_3200m" ? RegNetParams{26.31, 88, 2.25, 25, 48}
                                                : RegNetParams{36.97, 48, 2.24, 16, 24};
  c.stem_width = config_value<int64_t>(cfg, "stem_width", c.stem_width);
  c.bottleneck_mult = config_value<double>(cfg, "bottleneck_mult", c.bottleneck_mult);
  c.in_chans = config_value<int64_t>(cfg, "in_chans", c.in_chans);
  c.num_classes = config_value<int64_t>(cfg, "num_classes", c.num_classes);
  check(config_value<double>(cfg, "se_ratio", 0.0) == 0.0,
        [&] { return name + " config: squeeze-excitation (se_ratio) is not part of RegNetX"; });
  check(c.stem_width > 0 && c.bottleneck_mult > 0 && c.in_chans > 0 && c.num_classes > 0, [&] {
    return name + " config: stem_width, bottleneck_mult, in_chans and num_classes must be positive";
  });

  const nlohmann::json regnet = config_value<nlohmann::json>(cfg, "regnet_config", {});
  check(regnet.is_null() || regnet.is_object(), [&] {
    return name + " config: regnet_config must be an object {WA, W0, WM, DEPTH, GROUP_W}";
  });
  params.wa = config_value<double>(regnet, "WA", params.wa);
  params.w0 = config_value<double>(regnet, "W0", params.w0);
  params.wm = config_value<double>(regnet, "WM", params.wm);
  params.depth = config_value<int64_t>(regnet, "DEPTH", params.depth);
  params.group_width = config_value<int64_t>(regnet, "GROUP_W", params.group_width);
  check(!config_value<bool>(regnet, "SE_ON", false),
        [&] { return name + " config: regnet_config.SE_ON is not part of RegNetX"; });
  c.stages = generate_stages(params, c.bottleneck_mult);

  // Explicit stages take precedence over the generated ones.
  if (cfg.is_object() && cfg.contains("stages")) {
    c.stages.clear();
    for (const auto& s : cfg.at("stages")) {
      StageSpec spec;
      spec.name = config_value<std::string>(s, "name", "s" + std::to_string(c.stages.size() + 1));
      spec.depth = config_value<int64_t>(s, "depth", 0);
      spec.width = config_value<int64_t>(s, "width", 0);
      spec.stride = config_value<int64_t>(s, "stride", 2);
      spec.group_width = config_value<int64_t>(s, "group_width", 0);
      const int64_t wb = bottleneck_width(spec.width, c.bottleneck_mult);
      check(spec.depth > 0 && spec.width > 0 && spec.stride > 0 && spec.group_width > 0 &&
                wb % spec.group_width == 0,
            [&] {
              return name + " config: stage " + spec.name +
                     " needs positive depth, width, stride and a group_width dividing its width";
            });
      check(
          config_value<int64_t>(s, "groups", wb / spec.group_width) == wb / spec.group_width,
          [&] { return name + " config: stage " + spec.name + " groups != width / group_width"; });
      c.stages.push_back(spec);
    }
    check(!c.stages.empty(), [&] { return name + " config: 'stages' is empty"; });
  }
  return c;
}

// pycls ResBottleneckBlock: relu(shortcut(x) + f(x)) with
// f = 1x1 (a) -> 3x3 grouped, strided (b) -> 1x1 (c), BN after each and ReLU
// after a and b; shortcut = proj 1x1 (strided) + bn when the shape changes.
class ResBottleneckBlock : public Module {
 public:
  ResBottleneckBlock(int64_t in, int64_t out, int64_t stride, double bottleneck_mult,
                     int64_t group_width) {
    if (in != out || stride != 1) {
      proj_ = register_module("proj", std::make_shared<Conv2d>(in, out, 1, stride, 0, 1, false));
      proj_bn_ = register_module("bn", std::make_shared<BatchNorm2d>(out));
    }
    const int64_t wb = bottleneck_width(out, bottleneck_mult);
    auto f = register_module("f", std::make_shared<Module>());
    a_ = f->register_module("a", std::make_shared<Conv2d>(in, wb, 1, 1, 0, 1, false));
    a_bn_ = f->register_module("a_bn", std::make_shared<BatchNorm2d>(wb));
    b_ = f->register_module(
        "b", std::make_shared<Conv2d>(wb, wb, 3, stride, 1, wb / group_width, false));
    b_bn_ = f->register_module("b_bn", std::make_shared<BatchNorm2d>(wb));
    c_ = f->register_module("c", std::make_shared<Conv2d>(wb, out, 1, 1, 0, 1, false));
    c_bn_ = f->register_module("c_bn", std::make_shared<BatchNorm2d>(out));
  }

  Tensor forward(const Tensor& x) const {
    Tensor y = relu(a_bn_->forward(a_->forward(x)));
    y = relu(b_bn_->forward(b_->forward(y)));
    y = c_bn_->forward(c_->forward(y));
    Tensor shortcut = proj_ ? proj_bn_->forward(proj_->forward(x)) : x;
    return relu(shortcut + y);
  }

 private:
  std::shared_ptr<Conv2d> proj_, a_, b_, c_;
  std::shared_ptr<BatchNorm2d> proj_bn_, a_bn_, b_bn_, c_bn_;
};

class RegNetX : public Net {
 public:
  RegNetX(const std::string& name, const RegNetConfig& c, const Preprocess& preprocess) {
    model_name_ = name;
    preprocess_ = preprocess;
    num_classes_ = c.num_classes;
    auto stem = register_module("stem", std::make_shared<Module>());
    stem_conv_ = stem->register_module(
        "conv", std::make_shared<Conv2d>(c.in_chans, c.stem_width, 3, 2, 1, 1, false));
    stem_bn_ = stem->register_module("bn", std::make_shared<BatchNorm2d>(c.stem_width));
    add_unit("stem", UnitKind::Before);

    int64_t channels = c.stem_width;
    for (const auto& s : c.stages) {
      auto stage = register_module(s.name, std::make_shared<Module>());
      for (int64_t i = 0; i < s.depth; ++i) {
        auto block = std::make_shared<ResBottleneckBlock>(channels, s.width, i == 0 ? s.stride : 1,
                                                          c.bottleneck_mult, s.group_width);
        const std::string block_name = "b" + std::to_string(i + 1);
        stage->register_module(block_name, block);
        add_unit(s.name + "." + block_name, UnitKind::Block);
        blocks_.push_back(block);
        channels = s.width;
      }
    }

    auto head = register_module("head", std::make_shared<Module>());
    fc_ = head->register_module("fc", std::make_shared<Linear>(channels, c.num_classes));
    add_unit("head", UnitKind::After);
  }

  Tensor run_unit(int64_t t, const Tensor& x) override {
    check(t >= 0 && t < num_units(), [&] {
      return "RegNetX::run_unit: unit " + std::to_string(t) + " of " + std::to_string(num_units());
    });
    if (t == 0) return stem_conv_->forward(x);
    if (t == num_units() - 1) return fc_->forward(x);
    return blocks_[t - 1]->forward(x);
  }

  Tensor glue(int64_t t, const Tensor& y) override {
    if (t == 0) return relu(stem_bn_->forward(y));
    if (t == num_units() - 2) return flatten(adaptive_avg_pool2d(y, 1, 1), 1);
    return y;
  }

 private:
  std::shared_ptr<Conv2d> stem_conv_;
  std::shared_ptr<BatchNorm2d> stem_bn_;
  std::vector<std::shared_ptr<ResBottleneckBlock>> blocks_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace

std::shared_ptr<Net> create_regnetx(const std::string& name, const nlohmann::json& cfg) {
  return std::make_shared<RegNetX>(name, parse_config(name, cfg),
                                   parse_preprocess(cfg, Preprocess{}));
}

}  // namespace pk
