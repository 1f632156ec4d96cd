// The CNN families (ResNet, MobileNetV2, RegNetX, MNASNet): parameter counts
// of the standard configurations, a forward and backward pass of each at
// 224x224, and parity with PyTorch on the fixtures (same checkpoint, same
// input, logits within 1e-4 of the largest logit), plus the unit list.
#include <cmath>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "engine/stopwatch.h"
#include "nets/fold_bn.h"
#include "nets/init.h"
#include "nets/net.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

const std::string kModels = (fixtures_dir() / "models").string() + "/";
const char* kFixtureNames[] = {"resnet18_w16", "resnet50_w16", "mobilenetv2_w050", "regnetx_200m",
                               "mnasnet_s050"};

nlohmann::json read_config(const std::string& fixture) {
  std::ifstream in(kModels + fixture + "/config.json");
  REQUIRE_MESSAGE(in.good(), "cannot open " << kModels << fixture << "/config.json");
  return nlohmann::json::parse(in);
}

bool all_finite(const Tensor& t) {
  for (float v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// Units come as before+, (block | between)+, after+; each names a module; the
// units' layers, concatenated, are exactly the net's quantizable layers in
// network order (so each layer is in exactly one unit), and each lies inside
// its unit's module.
void check_unit_list(Net& net) {
  std::set<std::string> modules;
  for (auto& [name, module] : net.named_modules()) modules.insert(name);
  std::vector<std::string> unit_layers;
  int phase = 0;  // 0 before, 1 blocks, 2 after
  for (const Unit& unit : net.units()) {
    CHECK_MESSAGE(modules.count(unit.name), "unit " << unit.name << " is not a module");
    const int unit_phase = unit.kind == UnitKind::Before ? 0 : unit.kind == UnitKind::After ? 2 : 1;
    CHECK_MESSAGE(unit_phase >= phase,
                  "unit " << unit.name << " (" << unit_kind_name(unit.kind) << ") is out of order");
    phase = unit_phase;
    CHECK_MESSAGE(!unit.layers.empty(), "unit " << unit.name << " has no layers");
    for (const auto& layer : unit.layers) {
      CHECK_MESSAGE((layer == unit.name || layer.rfind(unit.name + ".", 0) == 0),
                    "layer " << layer << " lies outside unit " << unit.name);
      unit_layers.push_back(layer);
    }
  }
  CHECK(net.units().front().kind == UnitKind::Before);
  CHECK(net.units().back().kind == UnitKind::After);
  std::vector<std::string> quantizable;
  for (auto& [name, layer] : net.quantizable_layers()) quantizable.push_back(name);
  CHECK(unit_layers == quantizable);
}

// forward_range(0, k), glue(k-1), forward_range(k, n) equals the full forward
// for every split point k.
void check_split_forward(Net& net, const Tensor& input) {
  NoGradGuard no_grad;
  const Tensor full = net.forward(input);
  for (int64_t k = 1; k < net.num_units(); ++k) {
    Tensor head = net.forward_range(input, 0, k);
    Tensor split = net.forward_range(net.glue(k - 1, head), k, net.num_units());
    expect_close(split, full, 0.0, 1e-6, "split at unit " + net.units()[k].name);
  }
}

}  // namespace

TEST_CASE("standard CNN configurations have the reference parameter counts") {
  const std::pair<std::string, int64_t> expected[] = {
      {"resnet18", 11689512},    {"resnet50", 25557032},      {"mobilenetv2", 3504872},
      {"regnetx_600m", 6196040}, {"regnetx_3200m", 15296552}, {"mnasnet", 12469944}};
  for (const auto& entry : expected) {
    const auto& name = entry.first;
    const auto& count = entry.second;
    auto net = create_net(name);
    CHECK_MESSAGE(net->num_parameters() == count, name << ": " << net->num_parameters());
    CHECK(net->model_name() == name);
    CHECK(net->num_classes() == 1000);
    CHECK(net->preprocess().input_size == 224);
    CHECK(net->preprocess().crop_pct == doctest::Approx(0.875));
    check_unit_list(*net);
  }
}

TEST_CASE("standard CNNs run forward and backward at 224x224") {
  Generator gen(3);
  const Tensor image = gen.normal_tensor({1, 3, 224, 224}, 0.0f, 1.0f);
  for (const std::string name :
       {"resnet18", "resnet50", "mobilenetv2", "regnetx_600m", "regnetx_3200m", "mnasnet"}) {
    auto net = create_net(name);
    init_random(*net, 0);
    net->eval();
    const Stopwatch stopwatch;
    const std::clock_t cpu_start = std::clock();
    Tensor logits = net->forward(image);
    const double forward_s = stopwatch.seconds();
    sum(logits).backward();
    const double total_s = stopwatch.seconds();
    const double cpu_s = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    MESSAGE(name << ": forward " << forward_s << " s, forward+backward " << total_s << " s wall, "
                 << cpu_s << " s CPU");
    REQUIRE(logits.shape() == Shape{1, 1000});
    CHECK_MESSAGE(all_finite(logits), name << ": non-finite logits");
    bool grads_ok = true;
    for (auto& entry : net->named_parameters()) {
      const std::string& param_name = entry.first;
      auto& param = entry.second;
      const bool ok = param.grad().defined() && all_finite(param.grad());
      CHECK_MESSAGE(ok, name << ": gradient of " << param_name << " missing or not finite");
      grads_ok = grads_ok && ok;
    }
    CHECK(grads_ok);
  }
}

TEST_CASE("CNN fixtures reproduce PyTorch's logits") {
  for (const std::string fixture : kFixtureNames) {
    CAPTURE(fixture);
    const nlohmann::json config = read_config(fixture);
    auto net = create_net(config.at("model_name").get<std::string>(), config);
    CHECK(net->num_parameters() == config.at("num_params").get<int64_t>());
    CHECK(net->num_classes() == config.at("num_classes").get<int64_t>());
    CHECK(net->preprocess().input_size == config.at("input_size").get<int64_t>());
    CHECK(net->preprocess().crop_pct == doctest::Approx(config.at("crop_pct").get<double>()));
    check_unit_list(*net);

    const TensorMap weights = load_checkpoint(kModels + fixture + "/model.safetensors");
    CHECK(static_cast<int64_t>(weights.size()) ==
          config.at("num_state_dict_tensors").get<int64_t>());
    net->load_state_dict(weights, /*strict=*/true, fixture);
    net->eval();

    const TensorMap golden = load_safetensors(kModels + fixture + "/golden.safetensors");
    const Tensor& input = golden.at("input");
    const std::vector<float> expected = golden.at("logits").to_vector();
    Tensor logits;
    {
      NoGradGuard no_grad;
      logits = net->forward(input);
    }
    REQUIRE(logits.shape() == golden.at("logits").shape());
    const std::vector<float> actual = logits.to_vector();
    double max_logit = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < expected.size(); ++i) {
      max_logit = std::max(max_logit, std::fabs(static_cast<double>(expected[i])));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(actual[i]) - expected[i]));
    }
    MESSAGE(fixture << ": max |diff| " << max_diff << " (max |logit| " << max_logit << ", relative "
                    << max_diff / max_logit << ")");
    CHECK(max_diff <= 1e-4 * max_logit);
    check_split_forward(*net, input);
  }
}

TEST_CASE("RegNetX stages are generated from regnet_config as pycls does") {
  // regnetx_200m's config lists its stages; dropping them must regenerate
  // the same network from (WA, W0, WM, DEPTH, GROUP_W).
  nlohmann::json config = read_config("regnetx_200m");
  auto explicit_stages = create_net("regnetx_600m", config);
  config.erase("stages");
  auto generated = create_net("regnetx_600m", config);
  const TensorMap a = explicit_stages->state_dict(), b = generated->state_dict();
  REQUIRE(a.size() == b.size());
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    CHECK(ia->first == ib->first);
    CHECK(ia->second.shape() == ib->second.shape());
  }
}

TEST_CASE("MNASNet depths follow the scale as torchvision rounds them") {
  // mnasnet_s050 lists its depths; scale 0.5 alone must give the same ones
  // (24 * 0.5 = 12 rounds up to 16 through the 0.9 round-up bias).
  nlohmann::json config = read_config("mnasnet_s050");
  const int64_t expected = config.at("num_params").get<int64_t>();
  config.erase("depths");
  auto net = create_net("mnasnet", config);
  CHECK(net->num_parameters() == expected);
  CHECK(net->state_dict().at("layers.8.0.layers.6.weight").shape() == Shape{16, 24, 1, 1});
}

TEST_CASE("CNN configs reject what the families do not support") {
  CHECK_THROWS_WITH_AS(create_net("resnet18", {{"deep_stem", true}}),
                       doctest::Contains("deep_stem"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("resnet50", {{"block", "Basic"}}),
                       doctest::Contains("BasicBlock or Bottleneck"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("resnet18", {{"layers", {2, 2}}}),
                       doctest::Contains("same (non-zero) number of stages"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("mnasnet", {{"depths", {16, 8, 16}}}),
                       doctest::Contains("'depths' needs 2 + (number of stacks) = 8"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("regnetx_600m", {{"regnet_config", {{"SE_ON", true}}}}),
                       doctest::Contains("SE_ON"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("mobilenetv2", {{"width_mult", "wide"}}),
                       doctest::Contains("'width_mult' has the wrong type"), std::invalid_argument);
  // Preprocessing settings that would make every input NaN or empty.
  CHECK_THROWS_WITH_AS(create_net("resnet18", {{"std", {0.2, 0.0, 0.2}}}),
                       doctest::Contains("'std' values must be positive"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("resnet18", {{"input_size", 0}}),
                       doctest::Contains("input_size must be positive"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(create_net("resnet18", {{"crop_pct", 0.0}}),
                       doctest::Contains("crop_pct must be in (0, 1]"), std::invalid_argument);
}

TEST_CASE("init_random follows the documented initialization") {
  auto net = create_net("resnet18", {{"num_classes", 10}, {"width", 16}});
  init_random(*net, 5);
  const TensorMap state = net->state_dict();
  // Kaiming normal, fan_in = 16 * 3 * 3 for layer1.0.conv1.
  const std::vector<float> w = state.at("layer1.0.conv1.weight").to_vector();
  double sum_sq = 0.0;
  for (float v : w) sum_sq += static_cast<double>(v) * v;
  CHECK(std::sqrt(sum_sq / w.size()) == doctest::Approx(std::sqrt(2.0 / 144.0)).epsilon(0.1));
  for (float v : state.at("bn1.weight").to_vector()) CHECK(v == 1.0f);
  for (float v : state.at("bn1.running_var").to_vector()) CHECK(v == 1.0f);
  for (float v : state.at("fc.bias").to_vector()) CHECK(v == 0.0f);
  // LayerNorm at identity; any other parameter normal with std 0.02.
  Module holder;
  auto norm = holder.register_module("norm", std::make_shared<LayerNorm>(8));
  Tensor token = holder.register_parameter("cls_token", Tensor::zeros({1, 64, 64}));
  norm->weight.fill_(3.0f);
  init_random(holder, 1);
  for (float v : norm->weight.to_vector()) CHECK(v == 1.0f);
  double token_sq = 0.0;
  for (float v : token.to_vector()) token_sq += static_cast<double>(v) * v;
  CHECK(std::sqrt(token_sq / token.numel()) == doctest::Approx(0.02).epsilon(0.1));
  // Same seed, same weights.
  auto again = create_net("resnet18", {{"num_classes", 10}, {"width", 16}});
  init_random(*again, 5);
  CHECK(again->state_dict().at("fc.weight").to_vector() == state.at("fc.weight").to_vector());
}

TEST_CASE("BatchNorm folding: every BatchNorm merges into its conv, logits stay PyTorch's") {
  for (const std::string fixture : kFixtureNames) {
    CAPTURE(fixture);
    const nlohmann::json config = read_config(fixture);
    auto net = create_net(config.at("model_name").get<std::string>(), config);
    net->load_state_dict(load_checkpoint(kModels + fixture + "/model.safetensors"), true, fixture);
    net->eval();
    int64_t batch_norms = 0;
    for (auto& entry : net->named_modules())
      batch_norms += dynamic_cast<BatchNorm2d*>(entry.second) != nullptr;
    const int64_t params_before = net->num_parameters();

    REQUIRE(fold_batch_norms(*net) == batch_norms);
    CHECK(batch_norms > 0);
    for (auto& entry : net->named_modules())
      if (auto* bn = dynamic_cast<BatchNorm2d*>(entry.second)) CHECK_MESSAGE(bn->folded, entry.first);
    CHECK(net->num_parameters() >= params_before);  // convs without bias gained one

    const TensorMap golden = load_safetensors(kModels + fixture + "/golden.safetensors");
    const std::vector<float> expected = golden.at("logits").to_vector();
    Tensor logits;
    {
      NoGradGuard no_grad;
      logits = net->forward(golden.at("input"));
    }
    const std::vector<float> actual = logits.to_vector();
    double max_logit = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < expected.size(); ++i) {
      max_logit = std::max(max_logit, std::fabs(static_cast<double>(expected[i])));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(actual[i]) - expected[i]));
    }
    MESSAGE(fixture << " folded: max |diff| " << max_diff << " (relative " << max_diff / max_logit
                    << ")");
    CHECK(max_diff <= 1e-4 * max_logit);
  }
}

TEST_CASE("BatchNorm folding: nets without BatchNorm fold nothing, orphans are refused") {
  auto vit = create_net("deit_tiny");
  CHECK(fold_batch_norms(*vit) == 0);
  // A BatchNorm after a Linear has no conv to merge into.
  struct Orphan : Module {
    Orphan() {
      register_module("fc", std::make_shared<Linear>(4, 4));
      register_module("bn", std::make_shared<BatchNorm2d>(4));
    }
  };
  auto resnet = create_net("resnet18");
  resnet->register_module("orphan", std::make_shared<Orphan>());
  CHECK_THROWS_WITH_AS(fold_batch_norms(*resnet),
                       doctest::Contains("BatchNorm2d orphan.bn does not directly follow a Conv2d"),
                       std::invalid_argument);
}
