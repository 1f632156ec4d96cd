// ViT/DeiT and Swin (nets/vit.cpp, nets/swin.cpp): parameter counts of the
// standard configurations, forward and backward at 224 px, logits parity
// with timm 1.0.9 on the shared fixtures, and the unit decomposition.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "engine/stopwatch.h"
#include "nets/init.h"
#include "nets/net.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fixtures_dir() / "models";

nlohmann::json read_config(const std::string& fixture) {
  std::ifstream in(kModels / fixture / "config.json");
  REQUIRE_MESSAGE(in.good(), "missing fixture " << (kModels / fixture).string());
  return nlohmann::json::parse(in);
}

std::shared_ptr<Net> load_fixture(const std::string& fixture, nlohmann::json& config) {
  config = read_config(fixture);
  auto net = create_net(config.at("model_name").get<std::string>(), config);
  net->load_state_dict(load_checkpoint((kModels / fixture / "model.safetensors").string()),
                       /*strict=*/true, fixture);
  net->eval();
  return net;
}

double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v)
    if (!(std::fabs(x) <= m)) m = std::fabs(x);  // NaN propagates
  return m;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  std::vector<float> x = a.to_vector(), y = b.to_vector();
  double m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = std::fabs(static_cast<double>(x[i]) - y[i]);
    if (!(d <= m)) m = d;  // NaN propagates
  }
  return m;
}

// Every quantizable layer belongs to exactly one unit, and the units list
// them in network (registration) order.
void check_units_cover_layers(Net& net) {
  std::vector<std::string> in_units;
  for (const Unit& u : net.units()) {
    CHECK_MESSAGE(!u.layers.empty(), "unit " << u.name << " has no layers");
    for (const auto& l : u.layers) {
      CHECK_MESSAGE(l.rfind(u.name, 0) == 0, "layer " << l << " is outside unit " << u.name);
      in_units.push_back(l);
    }
  }
  std::vector<std::string> layers;
  for (auto& [name, layer] : net.quantizable_layers()) layers.push_back(name);
  CHECK(std::set<std::string>(in_units.begin(), in_units.end()).size() == in_units.size());
  CHECK(in_units == layers);
}

using Rows = std::vector<std::vector<double>>;

std::vector<double> ref_linear(const TensorMap& p, const std::string& name,
                               const std::vector<double>& in) {
  std::vector<float> w = p.at(name + ".weight").to_vector();
  std::vector<float> b =
      p.count(name + ".bias") ? p.at(name + ".bias").to_vector() : std::vector<float>();
  const size_t out_n = w.size() / in.size();
  std::vector<double> out(out_n);
  for (size_t o = 0; o < out_n; ++o) {
    double acc = b.empty() ? 0.0 : b[o];
    for (size_t i = 0; i < in.size(); ++i) acc += w[o * in.size() + i] * in[i];
    out[o] = acc;
  }
  return out;
}

std::vector<double> ref_layer_norm(const TensorMap& p, const std::string& name,
                                   const std::vector<double>& in, double eps) {
  std::vector<float> w = p.at(name + ".weight").to_vector(), b = p.at(name + ".bias").to_vector();
  double mean = 0.0, var = 0.0;
  for (double v : in) mean += v;
  mean /= in.size();
  for (double v : in) var += (v - mean) * (v - mean);
  var /= in.size();
  std::vector<double> out(in.size());
  for (size_t i = 0; i < in.size(); ++i)
    out[i] = (in[i] - mean) / std::sqrt(var + eps) * w[i] + b[i];
  return out;
}

// Plain-loop timm SwinTransformerBlock on x [1, R, R, C] (NHWC), spelled out
// token by token: norm1, cyclic shift by -shift, zero padding at the bottom
// and right to a multiple of ws, window attention with the relative position
// bias and (when shifted) -100 between different regions of the padded map,
// crop, shift back, residual, MLP.
std::vector<double> reference_swin_block(const TensorMap& p, const std::string& block,
                                         const std::vector<float>& x, int64_t R, int64_t C,
                                         int64_t heads, int64_t ws, int64_t shift) {
  const int64_t Rp = (R + ws - 1) / ws * ws, N = ws * ws, hd = C / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd)), eps = 1e-5;
  auto token = [&](int64_t r, int64_t c) {
    return std::vector<double>(x.begin() + (r * R + c) * C, x.begin() + (r * R + c + 1) * C);
  };
  Rows grid(Rp * Rp, std::vector<double>(C, 0.0));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < R; ++c)
      grid[r * Rp + c] =
          ref_layer_norm(p, block + ".norm1", token((r + shift) % R, (c + shift) % R), eps);
  auto region = [&](int64_t i) { return i < Rp - ws ? 0 : (i < Rp - shift ? 1 : 2); };
  std::vector<float> table = p.at(block + ".attn.relative_position_bias_table").to_vector();
  Rows attended(Rp * Rp);
  for (int64_t wr = 0; wr < Rp / ws; ++wr)
    for (int64_t wc = 0; wc < Rp / ws; ++wc) {
      auto row = [&](int64_t t) { return wr * ws + t / ws; };
      auto col = [&](int64_t t) { return wc * ws + t % ws; };
      Rows qkv(N);
      for (int64_t t = 0; t < N; ++t)
        qkv[t] = ref_linear(p, block + ".attn.qkv", grid[row(t) * Rp + col(t)]);
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> o(C, 0.0);
        for (int64_t h = 0; h < heads; ++h) {
          std::vector<double> a(N);
          double top = -1e300, total = 0.0;
          for (int64_t j = 0; j < N; ++j) {
            double dot = 0.0;
            for (int64_t d = 0; d < hd; ++d)
              dot += qkv[i][h * hd + d] * scale * qkv[j][C + h * hd + d];
            int64_t rel = (i / ws - j / ws + ws - 1) * (2 * ws - 1) + (i % ws - j % ws + ws - 1);
            a[j] = dot + table[rel * heads + h];
            if (shift > 0 &&
                region(row(i)) * 3 + region(col(i)) != region(row(j)) * 3 + region(col(j)))
              a[j] -= 100.0;
            top = std::max(top, a[j]);
          }
          for (double& v : a) total += (v = std::exp(v - top));
          for (int64_t j = 0; j < N; ++j)
            for (int64_t d = 0; d < hd; ++d)
              o[h * hd + d] += a[j] / total * qkv[j][2 * C + h * hd + d];
        }
        attended[row(i) * Rp + col(i)] = ref_linear(p, block + ".attn.proj", o);
      }
    }
  std::vector<double> out;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < R; ++c) {
      std::vector<double> y = token(r, c);
      const std::vector<double>& a = attended[((r - shift + R) % R) * Rp + (c - shift + R) % R];
      for (int64_t k = 0; k < C; ++k) y[k] += a[k];
      std::vector<double> hidden =
          ref_linear(p, block + ".mlp.fc1", ref_layer_norm(p, block + ".norm2", y, eps));
      for (double& v : hidden) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
      std::vector<double> m = ref_linear(p, block + ".mlp.fc2", hidden);
      for (int64_t k = 0; k < C; ++k) out.push_back(y[k] + m[k]);
    }
  return out;
}

}  // namespace

TEST_CASE("standard ViT/DeiT/Swin configurations have timm's parameter counts") {
  const std::map<std::string, int64_t> expected = {
      {"vit_small", 22050664},  {"vit_base", 86567656},  {"deit_tiny", 5717416},
      {"deit_small", 22050664}, {"deit_base", 86567656}, {"swin_tiny", 28288354},
      {"swin_small", 49606258}, {"swin_base", 87768224}};
  for (const auto& entry : expected) {
    const auto& name = entry.first;
    const auto& count = entry.second;
    auto net = create_net(name);
    CHECK_MESSAGE(net->num_parameters() == count, name);
    CHECK(net->num_classes() == 1000);
    check_units_cover_layers(*net);
  }
}

TEST_CASE("standard configurations: units and preprocessing") {
  auto vit = create_net("vit_small");
  CHECK(vit->num_units() == 14);
  CHECK(vit->units().front().name == "patch_embed");
  CHECK(vit->units()[1].layers ==
        std::vector<std::string>{"blocks.0.attn.qkv", "blocks.0.attn.matmul1",
                                 "blocks.0.attn.matmul2", "blocks.0.attn.proj", "blocks.0.mlp.fc1",
                                 "blocks.0.mlp.fc2"});
  CHECK(vit->units().back().kind == UnitKind::After);
  CHECK(vit->preprocess().mean[0] == 0.5f);
  CHECK(vit->preprocess().crop_pct == 0.9);
  CHECK(vit->preprocess().interpolation == "bicubic");
  auto deit = create_net("deit_tiny");
  CHECK(deit->preprocess().crop_pct == 0.875);
  CHECK(deit->preprocess().mean[0] == 0.485f);

  // swin_tiny: patch_embed, 12 blocks (2-2-6-2), 3 downsamples, head.
  auto swin = create_net("swin_tiny");
  CHECK(swin->num_units() == 1 + 12 + 3 + 1);
  std::vector<std::string> between;
  for (const Unit& u : swin->units())
    if (u.kind == UnitKind::Between) between.push_back(u.name);
  CHECK(between == std::vector<std::string>{"layers.1.downsample", "layers.2.downsample",
                                            "layers.3.downsample"});
  CHECK(swin->units().back().layers == std::vector<std::string>{"head.fc"});
  CHECK(swin->preprocess().crop_pct == 0.9);
  CHECK(swin->preprocess().interpolation == "bicubic");
}

// Every parameter of a standard configuration takes part in the logits of a
// 224 px image: forward and backward with random weights.
static void check_forward_backward_224(const std::string& name) {
  auto net = create_net(name);
  init_random(*net, 11);
  Generator gen(5);
  Tensor image = gen.uniform_tensor({1, 3, 224, 224}, -1.0f, 1.0f);
  Stopwatch stopwatch;
  Tensor logits = net->forward(image);
  double forward_s = stopwatch.seconds();
  REQUIRE(logits.shape() == Shape{1, 1000});
  stopwatch.restart();
  sum(logits).backward();
  double backward_s = stopwatch.seconds();
  MESSAGE(name << ": forward " << forward_s << " s, backward " << backward_s << " s");
  std::vector<float> values = logits.to_vector();
  CHECK_MESSAGE(std::isfinite(max_abs(values)), name << " logits not finite");
  CHECK(max_abs(values) > 0.0);
  // Every parameter takes part in the logits.
  for (auto& entry : net->named_parameters()) {
    const std::string& pname = entry.first;
    auto& p = entry.second;
    REQUIRE_MESSAGE(p.grad().defined(), name << ": no gradient for " << pname);
    double g = max_abs(p.grad().to_vector());
    CHECK_MESSAGE((std::isfinite(g) && g > 0.0),
                  name << ": gradient of " << pname << " is " << g);
  }
}

TEST_CASE("forward and backward at 224 px with random weights: tiny and small models") {
  for (const char* name : {"deit_tiny", "deit_small", "vit_small", "swin_tiny", "swin_small"})
    check_forward_backward_224(name);
}

// The same code at 3-4x the cost (about 2-7 s each on 2 cores), in its own
// test so that CTest can run it beside the others.
TEST_CASE("forward and backward at 224 px with random weights: base models") {
  for (const char* name : {"vit_base", "deit_base", "swin_base"}) check_forward_backward_224(name);
}

TEST_CASE("timm fixtures: logits match, units compose to the full forward") {
  for (const std::string fixture : {"deit_t32", "vit_s32", "swin_t32"}) {
    nlohmann::json config;
    auto net = load_fixture(fixture, config);
    CHECK(net->num_parameters() == config.at("num_params").get<int64_t>());
    CHECK(net->num_classes() == config.at("num_classes").get<int64_t>());
    CHECK(net->preprocess().input_size == 32);
    CHECK(net->preprocess().crop_pct == 1.0);
    CHECK(net->preprocess().interpolation == "bilinear");
    check_units_cover_layers(*net);

    TensorMap golden = load_safetensors((kModels / fixture / "golden.safetensors").string());
    NoGradGuard no_grad;
    Tensor logits = net->forward(golden.at("input"));
    double err = max_abs_diff(logits, golden.at("logits"));
    double scale = max_abs(golden.at("logits").to_vector());
    MESSAGE(fixture << ": max|diff| " << err << ", max|logit| " << scale << ", ratio "
                    << err / scale);
    CHECK(err <= 1e-4 * scale);

    // Splitting the forward at every unit boundary changes nothing.
    const int64_t n = net->num_units();
    for (int64_t k = 1; k < n; ++k) {
      Tensor head_part = net->forward_range(golden.at("input"), 0, k);
      Tensor rest = net->forward_range(net->glue(k - 1, head_part), k, n);
      CHECK_MESSAGE(max_abs_diff(rest, logits) == 0.0, fixture << " split at unit " << k);
    }
  }
}

TEST_CASE("the torch.save checkpoints of the fixtures load strictly with the same names") {
  for (const std::string fixture : {"deit_t32", "vit_s32", "swin_t32"}) {
    nlohmann::json config = read_config(fixture);
    auto net = create_net(config.at("model_name").get<std::string>(), config);
    LoadReport report =
        net->load_state_dict(load_checkpoint((kModels / fixture / "model.pth").string()), false);
    CHECK_MESSAGE(report.ok(), fixture << ": " << report.summary());
  }
}

TEST_CASE("Swin: padded and shifted windows, odd grids") {
  // A 6x6 grid with window 4: both blocks pad to 8x8 and block 1 also shifts
  // by 2, so its mask mixes padding and rolled regions; stage 1 (3x3) shrinks
  // its window to 3.
  nlohmann::json cfg = {{"timm_kwargs",
                         {{"img_size", 12},
                          {"patch_size", 2},
                          {"window_size", 4},
                          {"embed_dim", 8},
                          {"depths", {2, 1}},
                          {"num_heads", {2, 4}},
                          {"num_classes", 3}}}};
  SUBCASE("window and shift per block") {
    auto net = create_net("swin_tiny", cfg);
    REQUIRE(net->num_units() == 6);
    TensorMap params = net->state_dict();
    CHECK(params.at("layers.0.blocks.1.attn.relative_position_bias_table").shape() == Shape{49, 2});
    CHECK(params.at("layers.1.blocks.0.attn.relative_position_bias_table").shape() == Shape{25, 4});
    std::map<std::string, Shape> buffers;
    for (auto& [name, t] : net->named_buffers()) buffers[name] = t.shape();
    CHECK(buffers.at("layers.0.blocks.0.attn.relative_position_index") == Shape{256});
    CHECK(buffers.count("layers.0.blocks.0.attn_mask") == 0);
    CHECK(buffers.at("layers.0.blocks.1.attn_mask") == Shape{4, 16, 16});  // 8x8 padded grid
    CHECK(buffers.at("layers.1.blocks.0.attn.relative_position_index") == Shape{81});
    CHECK(params.count("layers.0.blocks.1.attn_mask") == 0);  // not persistent, as timm
  }
  SUBCASE("blocks match a plain-loop timm reference, and are differentiable") {
    auto net = create_net("swin_tiny", cfg);
    init_random(*net, 3);
    TensorMap p = net->state_dict();
    Generator gen(8);
    struct Case {
      int64_t unit;
      const char* block;
      int64_t R, C, heads, ws, shift;
    };
    for (const Case& k : {Case{1, "layers.0.blocks.0", 6, 8, 2, 4, 0},      // padded
                          Case{2, "layers.0.blocks.1", 6, 8, 2, 4, 2},      // padded, shifted
                          Case{4, "layers.1.blocks.0", 3, 16, 4, 3, 0}}) {  // window shrunk to 3
      Tensor tokens = random_input({1, k.R, k.R, k.C}, gen);                // NHWC
      std::vector<double> expected =
          reference_swin_block(p, k.block, tokens.to_vector(), k.R, k.C, k.heads, k.ws, k.shift);
      expect_close(net->run_unit(k.unit, tokens), expected, 1e-4, 1e-4, k.block);
      expect_gradients([&](const std::vector<Tensor>& in) { return net->run_unit(k.unit, in[0]); },
                       {tokens});
    }
  }
  SUBCASE("patch merging refuses an odd grid") {
    cfg["timm_kwargs"]["depths"] = {1, 1, 1};
    cfg["timm_kwargs"]["num_heads"] = {2, 4, 8};
    CHECK_THROWS_WITH_AS(create_net("swin_tiny", cfg), doctest::Contains("odd"),
                         std::invalid_argument);
  }
}

TEST_CASE("model configs that describe a different network are rejected") {
  nlohmann::json swin = read_config("swin_t32");
  swin["effective_blocks"][5]["shift_size"] = {2, 2};
  CHECK_THROWS_WITH_AS(create_net("swin_tiny", swin), doctest::Contains("effective_blocks[5]"),
                       std::invalid_argument);
  nlohmann::json vit = read_config("vit_s32");
  vit["timm_kwargs"]["global_pool"] = "avg";
  CHECK_THROWS_AS(create_net("vit_small", vit), std::invalid_argument);
  vit = read_config("vit_s32");
  vit["input_size"] = 48;
  CHECK_THROWS_WITH_AS(create_net("vit_small", vit), doctest::Contains("img_size"),
                       std::invalid_argument);
  auto net = create_net("vit_small", read_config("vit_s32"));
  CHECK_THROWS_WITH_AS(net->forward(Tensor::zeros({1, 3, 48, 48})), doctest::Contains("32"),
                       std::invalid_argument);
}
