// End to end: a 2-layer conv net learns a small synthetic task with Adam
// through the engine's own autograd.
#include "engine/optim.h"
#include "nets/layers.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

// Four pattern classes (horizontal bar, vertical bar, diagonal, dot) at a
// random place on a noisy 8x8 canvas: a translation-invariant task that a
// conv + global pooling net can learn.
void make_batch(Generator& gen, int64_t n, Tensor& images, Tensor& labels) {
  std::vector<float> x(n * 64);
  std::vector<int64_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    float* img = x.data() + i * 64;
    for (int p = 0; p < 64; ++p) img[p] = gen.uniform(-0.2f, 0.2f);
    int64_t cls = gen.randint(4), r = 1 + gen.randint(5), c = 1 + gen.randint(5);
    for (int k = -1; k <= 1; ++k) {
      if (cls == 0) img[r * 8 + c + k] += 1.0f;
      if (cls == 1) img[(r + k) * 8 + c] += 1.0f;
      if (cls == 2) img[(r + k) * 8 + c + k] += 1.0f;
    }
    if (cls == 3) img[r * 8 + c] += 1.5f;
    y[i] = cls;
  }
  images = Tensor::from_vector(x, {n, 1, 8, 8});
  labels = Tensor::from_int64(y, {n});
}

struct TinyNet : Module {
  TinyNet(Generator& gen) {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(1, 8, 3, 1, 1));
    conv2 = register_module("conv2", std::make_shared<Conv2d>(8, 4, 3, 1, 1));
    for (auto& [name, p] : named_parameters())
      p.copy_(gen.normal_tensor(p.shape(), 0.0f, name.find("bias") != std::string::npos ? 0.0f : 0.3f));
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = relu(conv1->forward(x));
    return flatten(adaptive_avg_pool2d(conv2->forward(h), 1, 1));  // logits [N, 4]
  }
  std::shared_ptr<Conv2d> conv1, conv2;
};

}  // namespace

TEST_CASE("a 2-layer conv net learns a synthetic task with Adam") {
  Generator gen(1005);
  TinyNet net(gen);
  Adam adam(net.parameters(), 0.02f);
  Tensor images, labels;
  make_batch(gen, 256, images, labels);
  double first_loss = 0.0, last_loss = 0.0;
  for (int step = 0; step < 300; ++step) {
    adam.zero_grad();
    Tensor loss = cross_entropy(net.forward(images), labels);
    loss.backward();
    adam.step();
    if (step == 0) first_loss = loss.item();
    last_loss = loss.item();
  }
  MESSAGE("loss " << first_loss << " -> " << last_loss);
  CHECK(last_loss < first_loss / 5.0);  // the stated factor: at least 5x lower

  Tensor test_images, test_labels;
  make_batch(gen, 256, test_images, test_labels);
  NoGradGuard guard;
  std::vector<float> logits = net.forward(test_images).to_vector();
  std::vector<int64_t> y = test_labels.to_int64_vector();
  int correct = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    int best = 0;
    for (int k = 1; k < 4; ++k)
      if (logits[i * 4 + k] > logits[i * 4 + best]) best = k;
    correct += best == y[i];
  }
  MESSAGE("held-out accuracy " << correct / 2.56 << "%");
  CHECK(correct > 0.9 * 256);
}
