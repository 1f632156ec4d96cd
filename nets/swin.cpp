// Swin Transformer as timm 1.0.9's SwinTransformer (NHWC activations,
// shifted windows, relative position bias), with timm's parameter names.
//
// Units: "patch_embed" (its conv); per stage i: "layers.<i>.downsample" for
// i > 0 (its reduction Linear), then "layers.<i>.blocks.<j>"; "head" (head.fc).
// Glue: after patch_embed, NCHW -> NHWC and patch_embed.norm; before a
// downsample, the 2x2 patch merge and downsample.norm; before the head, the
// final norm and the average over H and W.
#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nets/attention.h"
#include "nets/families.h"

namespace pk {
namespace {

struct SwinConfig {
  int64_t img_size = 224, patch_size = 4, in_chans = 3, window_size = 7;
  int64_t embed_dim = 96;
  std::vector<int64_t> depths, num_heads;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  int64_t num_classes = 1000;
  float layer_norm_eps = 1e-5f;
};

struct SwinStandard {
  int64_t embed_dim;
  std::vector<int64_t> depths, num_heads;
};

const std::map<std::string, SwinStandard>& swin_standards() {
  static const std::map<std::string, SwinStandard> table = {
      {"swin_tiny", {96, {2, 2, 6, 2}, {3, 6, 12, 24}}},
      {"swin_small", {96, {2, 2, 18, 2}, {3, 6, 12, 24}}},
      {"swin_base", {128, {2, 2, 18, 2}, {4, 8, 16, 32}}},
  };
  return table;
}

// timm's relative_position_index for a ws x ws window: entry (i, j) indexes
// the bias table row of the offset between tokens i and j, flattened to [N*N].
Tensor relative_position_index(int64_t ws) {
  const int64_t n = ws * ws;
  std::vector<int64_t> index(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t dr = i / ws - j / ws + ws - 1, dc = i % ws - j % ws + ws - 1;
      index[i * n + j] = dr * (2 * ws - 1) + dc;
    }
  return Tensor::from_int64(index, {n * n});
}

// timm's shifted-window attention mask [num_windows, N, N] for a padded
// side x side map: the rolled map splits into 3 x 3 regions at the slices
// (0, -ws), (-ws, -shift), (-shift, None) of each axis; tokens of different
// regions within one window must not attend to each other (-100).
Tensor shift_attention_mask(int64_t side, int64_t ws, int64_t shift) {
  auto band = [&](int64_t i) { return i < side - ws ? 0 : (i < side - shift ? 1 : 2); };
  const int64_t per_side = side / ws, n = ws * ws;
  std::vector<float> mask(per_side * per_side * n * n);
  std::vector<int> region(n);
  for (int64_t w = 0; w < per_side * per_side; ++w) {
    const int64_t row0 = (w / per_side) * ws, col0 = (w % per_side) * ws;
    for (int64_t i = 0; i < n; ++i) region[i] = band(row0 + i / ws) * 3 + band(col0 + i % ws);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        mask[(w * n + i) * n + j] = region[i] == region[j] ? 0.0f : -100.0f;
  }
  return Tensor::from_vector(mask, {per_side * per_side, n, n});
}

class WindowAttention : public Attention {
 public:
  WindowAttention(int64_t dim, int64_t heads, int64_t window, bool qkv_bias)
      : Attention(dim, heads, qkv_bias, ScaleAt::Query), window_(window) {
    table_ = register_parameter("relative_position_bias_table",
                                Tensor::zeros({(2 * window - 1) * (2 * window - 1), heads}));
    index_ = register_buffer("relative_position_index", relative_position_index(window),
                             /*persistent=*/false);
  }

  // x [B * num_windows, ws*ws, C]; mask [num_windows, N, N] or undefined.
  Tensor forward(const Tensor& x, const Tensor& mask) const {
    const int64_t n = window_ * window_;
    // [N*N, heads] -> [heads, N, N], broadcast over windows.
    Tensor bias = permute(reshape(index_select(table_, 0, index_), {n, n, num_heads}), {2, 0, 1});
    return Attention::forward(x, [&](const Tensor& scores) {
      Tensor biased = add(scores, bias);
      if (!mask.defined()) return biased;
      // [B, num_windows, heads, N, N] + mask[num_windows, 1, N, N]
      const int64_t windows = mask.size(0);
      Tensor per_image = reshape(biased, {-1, windows, num_heads, n, n});
      return reshape(add(per_image, reshape(mask, {windows, 1, n, n})), {-1, num_heads, n, n});
    });
  }

 private:
  int64_t window_;
  Tensor table_, index_;
};

class SwinBlock : public Module {
 public:
  // `resolution` is the block's (square) input grid; as timm, a window that
  // covers the whole grid shrinks to it and the shift is dropped.
  SwinBlock(const SwinConfig& c, int64_t dim, int64_t heads, int64_t resolution, bool shifted)
      : dim_(dim), resolution_(resolution) {
    window_ = std::min(resolution, c.window_size);
    shift_ = (shifted && resolution > window_) ? c.window_size / 2 : 0;
    padded_ = (resolution + window_ - 1) / window_ * window_;
    norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, c.layer_norm_eps));
    attn =
        register_module("attn", std::make_shared<WindowAttention>(dim, heads, window_, c.qkv_bias));
    norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, c.layer_norm_eps));
    mlp =
        register_module("mlp", std::make_shared<Mlp>(dim, static_cast<int64_t>(dim * c.mlp_ratio)));
    if (shift_ > 0)
      attn_mask_ = register_buffer("attn_mask", shift_attention_mask(padded_, window_, shift_),
                                   /*persistent=*/false);
  }

  int64_t window() const { return window_; }
  int64_t shift() const { return shift_; }
  int64_t resolution() const { return resolution_; }

  // x [B, H, W, C] (NHWC).
  Tensor forward(const Tensor& x) const {
    check(x.dim() == 4 && x.size(1) == resolution_ && x.size(2) == resolution_ && x.size(3) == dim_,
          [&] {
            return "SwinBlock: expects [B, " + std::to_string(resolution_) + ", " +
                   std::to_string(resolution_) + ", " + std::to_string(dim_) + "], got " +
                   x.describe();
          });
    const int64_t B = x.size(0), C = dim_, ws = window_, per_side = padded_ / ws;
    Tensor h = norm1->forward(x);
    if (shift_ > 0) h = roll(h, {-shift_, -shift_}, {1, 2});
    const int64_t extra = padded_ - resolution_;
    if (extra > 0) h = pad(h, {0, 0, 0, extra, 0, extra});
    // Window partition: [B, P, ws, P, ws, C] -> [B*P*P, ws*ws, C].
    Tensor windows =
        reshape(permute(reshape(h, {B, per_side, ws, per_side, ws, C}), {0, 1, 3, 2, 4, 5}),
                {B * per_side * per_side, ws * ws, C});
    Tensor attended = attn->forward(windows, attn_mask_);
    // Window reverse.
    h = reshape(permute(reshape(attended, {B, per_side, per_side, ws, ws, C}), {0, 1, 3, 2, 4, 5}),
                {B, padded_, padded_, C});
    if (extra > 0) h = narrow(narrow(h, 1, 0, resolution_), 2, 0, resolution_);
    if (shift_ > 0) h = roll(h, {shift_, shift_}, {1, 2});
    Tensor y = add(x, h);
    return add(y, mlp->forward(norm2->forward(y)));
  }

  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<WindowAttention> attn;
  std::shared_ptr<Mlp> mlp;

 private:
  int64_t dim_, resolution_, window_, shift_, padded_;
  Tensor attn_mask_;  // undefined without shift
};

class PatchMerging : public Module {
 public:
  PatchMerging(int64_t dim, int64_t out_dim, float eps) {
    norm = register_module("norm", std::make_shared<LayerNorm>(4 * dim, eps));
    reduction = register_module("reduction", std::make_shared<Linear>(4 * dim, out_dim, false));
  }
  // The glue before the reduction: [B, H, W, C] -> 2x2 neighbourhoods as
  // [B, H/2, W/2, 4C] in timm's order (row offset fastest), then norm.
  Tensor merge(const Tensor& x) const {
    const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
    Tensor grouped = permute(reshape(x, {B, H / 2, 2, W / 2, 2, C}), {0, 1, 3, 4, 2, 5});
    return norm->forward(reshape(grouped, {B, H / 2, W / 2, 4 * C}));
  }
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Linear> reduction;
};

class SwinPatchEmbed : public Module {
 public:
  explicit SwinPatchEmbed(const SwinConfig& c) {
    proj = register_module(
        "proj", std::make_shared<Conv2d>(c.in_chans, c.embed_dim, c.patch_size, c.patch_size));
    norm = register_module("norm", std::make_shared<LayerNorm>(c.embed_dim, c.layer_norm_eps));
  }
  std::shared_ptr<Conv2d> proj;
  std::shared_ptr<LayerNorm> norm;
};

class SwinHead : public Module {
 public:
  SwinHead(int64_t features, int64_t classes) {
    fc = register_module("fc", std::make_shared<Linear>(features, classes));
  }
  std::shared_ptr<Linear> fc;
};

class SwinTransformer : public Net {
 public:
  SwinTransformer(const std::string& name, const SwinConfig& c, const Preprocess& preprocess)
      : cfg_(c) {
    model_name_ = name;
    preprocess_ = preprocess;
    num_classes_ = c.num_classes;
    int64_t resolution = c.img_size / c.patch_size;
    check(resolution > 0, [&] {
      return "model config (swin): img_size " + std::to_string(c.img_size) +
             " is smaller than patch_size " + std::to_string(c.patch_size);
    });
    patch_embed_ = register_module("patch_embed", std::make_shared<SwinPatchEmbed>(c));
    steps_.push_back({Step::Embed, nullptr, nullptr});
    add_unit("patch_embed", UnitKind::Before);

    auto layers = register_module("layers", std::make_shared<ModuleList>());
    int64_t dim = c.embed_dim;
    for (size_t i = 0; i < c.depths.size(); ++i) {
      const std::string stage_name = "layers." + std::to_string(i);
      auto stage = layers->append(std::make_shared<Module>());
      if (i > 0) {
        check(resolution % 2 == 0, [&] {
          return "model config (swin): stage " + std::to_string(i) +
                 " merges 2x2 patches of an odd " + std::to_string(resolution) + "x" +
                 std::to_string(resolution) + " grid";
        });
        auto merge = stage->register_module(
            "downsample", std::make_shared<PatchMerging>(dim, 2 * dim, c.layer_norm_eps));
        steps_.push_back({Step::Merge, nullptr, merge.get()});
        add_unit(stage_name + ".downsample", UnitKind::Between);
        dim *= 2;
        resolution /= 2;
      }
      auto blocks = stage->register_module("blocks", std::make_shared<ModuleList>());
      for (int64_t j = 0; j < c.depths[i]; ++j) {
        auto block = blocks->append(
            std::make_shared<SwinBlock>(c, dim, c.num_heads[i], resolution, j % 2 == 1));
        steps_.push_back({Step::Block, block.get(), nullptr});
        add_unit(stage_name + ".blocks." + std::to_string(j), UnitKind::Block);
      }
    }
    norm_ = register_module("norm", std::make_shared<LayerNorm>(dim, c.layer_norm_eps));
    head_ = register_module("head", std::make_shared<SwinHead>(dim, c.num_classes));
    steps_.push_back({Step::Head, nullptr, nullptr});
    add_unit("head", UnitKind::After);
  }

  // Every block's (stage, block, input resolution, window, shift), as the
  // fixtures' effective_blocks list them.
  std::vector<std::array<int64_t, 5>> effective_blocks() const {
    std::vector<std::array<int64_t, 5>> out;
    int64_t stage = -1, index = 0;
    for (const Step& s : steps_) {
      if (s.kind == Step::Merge || (s.kind == Step::Block && stage < 0)) {
        ++stage;
        index = 0;
      }
      if (s.kind == Step::Block)
        out.push_back({stage, index++, s.block->resolution(), s.block->window(), s.block->shift()});
    }
    return out;
  }

  Tensor run_unit(int64_t t, const Tensor& x) override {
    check(0 <= t && t < num_units(), [&] { return "swin run_unit: no unit " + std::to_string(t); });
    const Step& s = steps_[t];
    switch (s.kind) {
      case Step::Embed:
        // timm's PatchEmbed is strict about the image size (masks are fixed).
        check(x.dim() == 4 && x.size(1) == cfg_.in_chans && x.size(2) == cfg_.img_size &&
                  x.size(3) == cfg_.img_size,
              [&] {
                return model_name_ + ": expects images [B, " + std::to_string(cfg_.in_chans) +
                       ", " + std::to_string(cfg_.img_size) + ", " + std::to_string(cfg_.img_size) +
                       "], got " + x.describe();
              });
        return patch_embed_->proj->forward(x);
      case Step::Merge:
        return s.merge->reduction->forward(x);
      case Step::Block:
        return s.block->forward(x);
      case Step::Head:
        return head_->fc->forward(x);
    }
    return x;
  }

  // timm before 0.9 and the original Swin release merge patches at the end
  // of stage i ("layers.<i>.downsample", i < last), name the classifier
  // "head" and store the derived relative_position_index and attn_mask
  // buffers. timm 0.9 on merges at the start of stage i + 1 and names the
  // classifier "head.fc"; the tensors are the same. The buffers are
  // recomputed from the configuration, so they are dropped, as timm does.
  TensorMap adapt_checkpoint(TensorMap tensors) const override {
    auto starts = [](const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; };
    auto ends = [](const std::string& s, const std::string& x) {
      return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    bool merge_at_stage_end = false, head_fc = false;
    for (const auto& [name, t] : tensors) {
      merge_at_stage_end |= starts(name, "layers.0.downsample.");
      head_fc |= starts(name, "head.fc.");
    }
    TensorMap out;
    for (auto& [name, t] : tensors) {
      if (starts(name, "layers.") &&
          (ends(name, ".attn.relative_position_index") || ends(name, ".attn_mask")))
        continue;
      std::string key = name, rest;
      int64_t stage = 0;
      if (merge_at_stage_end && split_indexed_name(key, "layers.", stage, rest) &&
          starts(rest, "downsample."))
        key = "layers." + std::to_string(stage + 1) + "." + rest;
      if (!head_fc && (key == "head.weight" || key == "head.bias")) key = "head.fc." + key.substr(5);
      out.emplace(std::move(key), t);
    }
    return out;
  }

  // What follows unit t's layers, then what precedes unit t+1's layer.
  Tensor glue(int64_t t, const Tensor& y) override {
    check(0 <= t && t < num_units(), [&] { return "swin glue: no unit " + std::to_string(t); });
    if (t == num_units() - 1) return y;
    Tensor x = y;
    if (steps_[t].kind == Step::Embed) x = patch_embed_->norm->forward(permute(y, {0, 2, 3, 1}));
    const Step& next = steps_[t + 1];
    if (next.kind == Step::Merge) x = next.merge->merge(x);
    if (next.kind == Step::Head) x = mean(norm_->forward(x), {1, 2});
    return x;
  }

 private:
  struct Step {
    enum Kind { Embed, Merge, Block, Head } kind;
    SwinBlock* block;
    PatchMerging* merge;
  };
  SwinConfig cfg_;
  std::vector<Step> steps_;  // one per unit
  std::shared_ptr<SwinPatchEmbed> patch_embed_;
  std::shared_ptr<LayerNorm> norm_;
  std::shared_ptr<SwinHead> head_;
};

// The fixtures list each block's effective window and shift; a config that
// disagrees with what timm's rules give here describes a different network.
void check_effective_blocks(const nlohmann::json& cfg, const SwinTransformer& net) {
  if (!cfg.is_object() || !cfg.contains("effective_blocks")) return;
  const auto ours = net.effective_blocks();
  const nlohmann::json& listed = cfg.at("effective_blocks");
  check(listed.is_array() && listed.size() == ours.size(), [&] {
    return "model config (swin): effective_blocks lists " + std::to_string(listed.size()) +
           " blocks, the depths give " + std::to_string(ours.size());
  });
  for (size_t i = 0; i < ours.size(); ++i) {
    const nlohmann::json& e = listed[i];
    const auto& o = ours[i];
    auto pair_is = [&](const char* key, int64_t v) {
      auto p = e.at(key).get<std::vector<int64_t>>();
      return p.size() == 2 && p[0] == v && p[1] == v;
    };
    check(e.at("stage").get<int64_t>() == o[0] && e.at("block").get<int64_t>() == o[1] &&
              pair_is("input_resolution", o[2]) && pair_is("window_size", o[3]) &&
              pair_is("shift_size", o[4]),
          [&] {
            return "model config (swin): effective_blocks[" + std::to_string(i) +
                   "] = " + e.dump() + " differs from stage " + std::to_string(o[0]) + " block " +
                   std::to_string(o[1]) + ": resolution " + std::to_string(o[2]) + ", window " +
                   std::to_string(o[3]) + ", shift " + std::to_string(o[4]);
          });
  }
}

}  // namespace

std::shared_ptr<Net> create_swin(const std::string& name, const nlohmann::json& cfg) {
  auto standard = swin_standards().find(name);
  check(standard != swin_standards().end(),
        [&] { return "create_swin: unknown Swin model '" + name + "'"; });
  const SwinStandard& s = standard->second;
  const nlohmann::json kw =
      config_value<nlohmann::json>(cfg, "timm_kwargs", nlohmann::json::object());
  check(config_value<std::string>(kw, "global_pool", "avg") == "avg",
        "model config (swin): unsupported global_pool (only 'avg')");
  check(config_value<std::string>(cfg, "act", "gelu(erf)") == "gelu(erf)",
        "model config (swin): unsupported act (only 'gelu(erf)')");

  SwinConfig c;
  c.img_size = config_value<int64_t>(kw, "img_size", c.img_size);
  c.patch_size = config_value<int64_t>(kw, "patch_size", c.patch_size);
  c.in_chans = config_value<int64_t>(kw, "in_chans", config_value<int64_t>(cfg, "in_chans", 3));
  c.window_size = config_value<int64_t>(kw, "window_size", c.window_size);
  c.embed_dim = config_value<int64_t>(kw, "embed_dim", s.embed_dim);
  c.depths = config_value<std::vector<int64_t>>(kw, "depths", s.depths);
  c.num_heads = config_value<std::vector<int64_t>>(kw, "num_heads", s.num_heads);
  c.mlp_ratio = config_value<double>(kw, "mlp_ratio", c.mlp_ratio);
  c.qkv_bias = config_value<bool>(kw, "qkv_bias", c.qkv_bias);
  c.num_classes = config_value<int64_t>(cfg, "num_classes",
                                        config_value<int64_t>(kw, "num_classes", c.num_classes));
  c.layer_norm_eps = config_value<float>(cfg, "layer_norm_eps", c.layer_norm_eps);
  check(c.in_chans == 3, "model config (swin): in_chans must be 3 (RGB preprocessing)");
  check(!c.depths.empty() && c.depths.size() == c.num_heads.size(),
        "model config (swin): depths and num_heads need one entry per stage");
  for (int64_t d : c.depths) check(d > 0, "model config (swin): every stage needs depth >= 1");
  check(c.patch_size > 0 && c.window_size > 0 && c.num_classes > 0 && c.mlp_ratio > 0,
        "model config (swin): patch_size, window_size, num_classes and mlp_ratio must be positive");

  Preprocess defaults;
  defaults.input_size = c.img_size;
  defaults.crop_pct = 0.9;
  defaults.interpolation = "bicubic";
  Preprocess p = parse_preprocess(cfg, defaults);
  check(p.input_size == c.img_size, [&] {
    return "model config (swin): input_size " + std::to_string(p.input_size) +
           " differs from img_size " + std::to_string(c.img_size);
  });
  auto net = std::make_shared<SwinTransformer>(name, c, p);
  check_effective_blocks(cfg, *net);
  return net;
}

}  // namespace pk
