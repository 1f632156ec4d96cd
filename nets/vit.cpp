// ViT and DeiT as timm 1.0.9's VisionTransformer (class token, token pooling,
// pre-norm blocks), with timm's parameter names.
//
// Units: "patch_embed" (its conv), "blocks.0" ... "blocks.<depth-1>", "head".
// Glue after patch_embed: tokens from the conv map, class token, position
// embedding. Glue after the last block: final norm, class token pick.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nets/attention.h"
#include "nets/families.h"

namespace pk {
namespace {

struct VitConfig {
  int64_t img_size = 224, patch_size = 16, in_chans = 3;
  int64_t embed_dim = 0, depth = 12, num_heads = 0;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  int64_t num_classes = 1000;
  float layer_norm_eps = 1e-6f;
};

struct VitStandard {
  int64_t embed_dim, depth, num_heads;
  bool deit;  // DeiT uses ImageNet statistics and crop 0.875; ViT 0.5/0.5 and 0.9
};

const std::map<std::string, VitStandard>& vit_standards() {
  static const std::map<std::string, VitStandard> table = {
      {"vit_small", {384, 12, 6, false}}, {"vit_base", {768, 12, 12, false}},
      {"deit_tiny", {192, 12, 3, true}},  {"deit_small", {384, 12, 6, true}},
      {"deit_base", {768, 12, 12, true}},
  };
  return table;
}

// Rejects config.json settings of timm's VisionTransformer that this class does not build.
void check_vit_supported(const nlohmann::json& cfg, const nlohmann::json& kw) {
  auto require = [](bool ok, const std::string& what) {
    check(ok, [&] { return "model config (vit): unsupported setting " + what; });
  };
  require(config_value<bool>(kw, "class_token", true), "class_token=false");
  require(config_value<std::string>(kw, "global_pool", "token") == "token",
          "global_pool (only 'token')");
  require(!config_value<bool>(cfg, "pre_norm", false), "pre_norm=true");
  require(!config_value<bool>(cfg, "fc_norm", false), "fc_norm=true");
  require(!config_value<bool>(cfg, "qk_norm", false), "qk_norm=true");
  require(!cfg.is_object() || !cfg.contains("init_values") || cfg.at("init_values").is_null(),
          "init_values (LayerScale)");
  require(config_value<std::string>(cfg, "act", "gelu(erf)") == "gelu(erf)",
          "act (only 'gelu(erf)')");
  require(config_value<int64_t>(cfg, "num_prefix_tokens", 1) == 1, "num_prefix_tokens != 1");
}

class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t in_chans, int64_t dim, int64_t patch) {
    proj = register_module("proj", std::make_shared<Conv2d>(in_chans, dim, patch, patch));
  }
  std::shared_ptr<Conv2d> proj;
};

class VitBlock : public Module {
 public:
  explicit VitBlock(const VitConfig& c) {
    norm1 = register_module("norm1", std::make_shared<LayerNorm>(c.embed_dim, c.layer_norm_eps));
    attn = register_module("attn", std::make_shared<Attention>(c.embed_dim, c.num_heads, c.qkv_bias,
                                                               Attention::ScaleAt::Scores));
    norm2 = register_module("norm2", std::make_shared<LayerNorm>(c.embed_dim, c.layer_norm_eps));
    mlp = register_module(
        "mlp", std::make_shared<Mlp>(c.embed_dim, static_cast<int64_t>(c.embed_dim * c.mlp_ratio)));
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = add(x, attn->forward(norm1->forward(x)));
    return add(h, mlp->forward(norm2->forward(h)));
  }
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
};

class VisionTransformer : public Net {
 public:
  VisionTransformer(const std::string& name, const VitConfig& c, const Preprocess& preprocess)
      : cfg_(c) {
    model_name_ = name;
    preprocess_ = preprocess;
    num_classes_ = c.num_classes;
    const int64_t grid = c.img_size / c.patch_size;
    check(grid > 0, [&] {
      return "model config (vit): img_size " + std::to_string(c.img_size) +
             " is smaller than patch_size " + std::to_string(c.patch_size);
    });
    // Registration order follows timm, so named_modules() lists layers in network order.
    patch_embed_ = register_module(
        "patch_embed", std::make_shared<PatchEmbed>(c.in_chans, c.embed_dim, c.patch_size));
    cls_token_ = register_parameter("cls_token", Tensor::zeros({1, 1, c.embed_dim}));
    pos_embed_ = register_parameter("pos_embed", Tensor::zeros({1, grid * grid + 1, c.embed_dim}));
    auto blocks = register_module("blocks", std::make_shared<ModuleList>());
    for (int64_t i = 0; i < c.depth; ++i)
      blocks_.push_back(blocks->append(std::make_shared<VitBlock>(c)));
    norm_ = register_module("norm", std::make_shared<LayerNorm>(c.embed_dim, c.layer_norm_eps));
    head_ = register_module("head", std::make_shared<Linear>(c.embed_dim, c.num_classes));

    add_unit("patch_embed", UnitKind::Before);
    for (int64_t i = 0; i < c.depth; ++i) add_unit("blocks." + std::to_string(i), UnitKind::Block);
    add_unit("head", UnitKind::After);
  }

  Tensor run_unit(int64_t t, const Tensor& x) override {
    check(0 <= t && t < num_units(), [&] { return "vit run_unit: no unit " + std::to_string(t); });
    if (t == 0) {
      // timm's PatchEmbed is strict about the image size (pos_embed is fixed).
      check(x.dim() == 4 && x.size(1) == cfg_.in_chans && x.size(2) == cfg_.img_size &&
                x.size(3) == cfg_.img_size,
            [&] {
              return model_name_ + ": expects images [B, " + std::to_string(cfg_.in_chans) + ", " +
                     std::to_string(cfg_.img_size) + ", " + std::to_string(cfg_.img_size) +
                     "], got " + x.describe();
            });
      return patch_embed_->proj->forward(x);
    }
    if (t == num_units() - 1) return head_->forward(x);
    return blocks_[t - 1]->forward(x);
  }

  Tensor glue(int64_t t, const Tensor& y) override {
    check(0 <= t && t < num_units(), [&] { return "vit glue: no unit " + std::to_string(t); });
    if (t == 0) {  // [B, D, gh, gw] -> [B, 1 + gh*gw, D]
      const int64_t B = y.size(0), D = y.size(1);
      Tensor tokens = transpose(flatten(y, 2), 1, 2);
      Tensor cls = broadcast_to(cls_token_, {B, 1, D});
      return add(concat({cls, tokens}, 1), pos_embed_);
    }
    if (t == num_units() - 2) {  // after the last block: norm, then the class token
      Tensor normed = norm_->forward(y);
      return reshape(narrow(normed, 1, 0, 1), {y.size(0), y.size(2)});
    }
    return y;
  }

 private:
  VitConfig cfg_;
  std::shared_ptr<PatchEmbed> patch_embed_;
  Tensor cls_token_, pos_embed_;
  std::vector<std::shared_ptr<VitBlock>> blocks_;
  std::shared_ptr<LayerNorm> norm_;
  std::shared_ptr<Linear> head_;
};

}  // namespace

std::shared_ptr<Net> create_vit(const std::string& name, const nlohmann::json& cfg) {
  auto standard = vit_standards().find(name);
  check(standard != vit_standards().end(),
        [&] { return "create_vit: unknown ViT/DeiT model '" + name + "'"; });
  const VitStandard& s = standard->second;
  const nlohmann::json kw =
      config_value<nlohmann::json>(cfg, "timm_kwargs", nlohmann::json::object());
  check_vit_supported(cfg, kw);

  VitConfig c;
  c.img_size = config_value<int64_t>(kw, "img_size", c.img_size);
  c.patch_size = config_value<int64_t>(kw, "patch_size", c.patch_size);
  c.in_chans = config_value<int64_t>(kw, "in_chans", config_value<int64_t>(cfg, "in_chans", 3));
  c.embed_dim = config_value<int64_t>(kw, "embed_dim", s.embed_dim);
  c.depth = config_value<int64_t>(kw, "depth", s.depth);
  c.num_heads = config_value<int64_t>(kw, "num_heads", s.num_heads);
  c.mlp_ratio = config_value<double>(kw, "mlp_ratio", c.mlp_ratio);
  c.qkv_bias = config_value<bool>(kw, "qkv_bias", c.qkv_bias);
  c.num_classes = config_value<int64_t>(cfg, "num_classes",
                                        config_value<int64_t>(kw, "num_classes", c.num_classes));
  c.layer_norm_eps = config_value<float>(cfg, "layer_norm_eps", c.layer_norm_eps);
  check(c.in_chans == 3, "model config (vit): in_chans must be 3 (RGB preprocessing)");
  check(c.patch_size > 0 && c.depth > 0 && c.num_classes > 0 && c.mlp_ratio > 0,
        "model config (vit): patch_size, depth, num_classes and mlp_ratio must be positive");

  Preprocess defaults;
  defaults.input_size = c.img_size;
  defaults.interpolation = "bicubic";
  if (s.deit) {
    defaults.crop_pct = 0.875;
  } else {
    defaults.crop_pct = 0.9;
    for (int i = 0; i < 3; ++i) defaults.mean[i] = defaults.std[i] = 0.5f;
  }
  Preprocess p = parse_preprocess(cfg, defaults);
  check(p.input_size == c.img_size, [&] {
    return "model config (vit): input_size " + std::to_string(p.input_size) +
           " differs from img_size " + std::to_string(c.img_size);
  });
  return std::make_shared<VisionTransformer>(name, c, p);
}

}  // namespace pk
