// Module registry (dotted names, state dicts, buffers, train/eval) and the
// optimizers and schedule against hand-computed PyTorch update rules.
#include <cmath>
#include <stdexcept>

#include "engine/module.h"
#include "engine/optim.h"
#include "nets/layers.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

struct Block : Module {
  Block() {
    conv = register_module("conv1", std::make_shared<Conv2d>(3, 4, 3, 1, 1, 1, false));
    bn = register_module("bn1", std::make_shared<BatchNorm2d>(4));
  }
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
};

struct TinyNet : Module {
  TinyNet() {
    block = register_module("layer1.0", std::make_shared<Block>());
    fc = register_module("fc", std::make_shared<Linear>(4, 2));
    register_buffer("scratch", Tensor::zeros({3}), /*persistent=*/false);
  }
  std::shared_ptr<Block> block;
  std::shared_ptr<Linear> fc;
};

}  // namespace

TEST_CASE("dotted names match checkpoint naming") {
  TinyNet net;
  TensorMap sd = net.state_dict();
  std::vector<std::string> names;
  for (auto& [k, v] : sd) names.push_back(k);
  CHECK(names == std::vector<std::string>{
                     "fc.bias", "fc.weight", "layer1.0.bn1.bias", "layer1.0.bn1.num_batches_tracked",
                     "layer1.0.bn1.running_mean", "layer1.0.bn1.running_var",
                     "layer1.0.bn1.weight", "layer1.0.conv1.weight"});
  CHECK(net.num_parameters() == 4 * 3 * 9 + 4 + 4 + 4 * 2 + 2);
  CHECK(sd["layer1.0.bn1.num_batches_tracked"].dtype() == DType::I64);
  auto modules = net.named_modules();
  CHECK(modules.size() == 5);
  CHECK(modules[2].first == "layer1.0.conv1");
}

TEST_CASE("load_state_dict copies into existing handles and reports problems by name") {
  TinyNet a, b;
  Generator gen(1);
  for (auto& [name, t] : a.named_parameters()) t.copy_(gen.normal_tensor(t.shape(), 0.0f, 1.0f));
  Tensor handle = b.fc->weight;
  LoadReport ok = b.load_state_dict(a.state_dict());
  CHECK(ok.ok());
  expect_close(handle, a.fc->weight, 0.0, 0.0);

  TensorMap bad = a.state_dict();
  bad.erase("fc.bias");
  bad["extra.weight"] = Tensor::zeros({1});
  bad["fc.weight"] = Tensor::zeros({3, 4});
  try {
    b.load_state_dict(bad, true, "model.pth");
    FAIL("expected an error");
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    CHECK(msg.find("model.pth") != std::string::npos);
    CHECK(msg.find("fc.bias") != std::string::npos);
    CHECK(msg.find("extra.weight") != std::string::npos);
    CHECK(msg.find("fc.weight: file float32[3, 4] vs model float32[2, 4]") != std::string::npos);
  }
  LoadReport lax = b.load_state_dict(bad, false);
  CHECK(lax.missing == std::vector<std::string>{"fc.bias"});
  CHECK(lax.unexpected == std::vector<std::string>{"extra.weight"});
  CHECK(lax.mismatched.size() == 1);
}

TEST_CASE("train/eval propagates and non-persistent buffers stay out of state dicts") {
  TinyNet net;
  net.eval();
  CHECK_FALSE(net.block->bn->training());
  net.train();
  CHECK(net.block->bn->training());
  CHECK(net.named_buffers().size() == 4);
  CHECK(net.named_buffers("", true).size() == 3);
}

TEST_CASE("Adam follows torch.optim.Adam") {
  Tensor p = Tensor::from_vector({1.0f, -2.0f}, {2}).set_requires_grad(true);
  Adam adam({p}, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f);
  double ref[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int step = 1; step <= 3; ++step) {
    p.zero_grad();
    sum(mul(p, p)).backward();  // grad 2p
    adam.step();
    for (int i = 0; i < 2; ++i) {
      double g = 2 * ref[i] + 0.01 * ref[i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      double mh = m[i] / (1 - std::pow(0.9, step)), vh = v[i] / (1 - std::pow(0.999, step));
      ref[i] -= 0.1 * mh / (std::sqrt(vh) + 1e-8);
    }
  }
  expect_close(p, std::vector<double>{ref[0], ref[1]}, 1e-5, 1e-5);
}

TEST_CASE("SGD with momentum follows torch.optim.SGD") {
  Tensor p = Tensor::from_vector({1.0f}, {1}).set_requires_grad(true);
  SGD sgd({p}, 0.1f, 0.9f);
  double ref = 1.0, buf = 0.0;
  for (int step = 0; step < 3; ++step) {
    p.zero_grad();
    sum(mul(p, p)).backward();
    sgd.step();
    double g = 2 * ref;
    buf = step == 0 ? g : 0.9 * buf + g;
    ref -= 0.1 * buf;
  }
  expect_close(p, std::vector<double>{ref}, 1e-6, 1e-6);
}

TEST_CASE("cosine schedule anneals to eta_min over t_max steps") {
  Tensor p = Tensor::ones({1}).set_requires_grad(true);
  Adam adam({p}, 4e-5f);
  CosineSchedule sched(adam, 100);
  sched.step();
  CHECK(adam.lr() == doctest::Approx(4e-5 * (1 + std::cos(M_PI / 100)) / 2));
  for (int i = 1; i < 50; ++i) sched.step();
  CHECK(adam.lr() == doctest::Approx(2e-5));
  for (int i = 50; i < 100; ++i) sched.step();
  CHECK(adam.lr() == doctest::Approx(0.0).epsilon(1e-12));
}
