// Losses: forward against double-precision loops on tensors of rank 2, 3 and
// 4, backward against finite differences, and the input checks.
#include <cmath>
#include <stdexcept>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

const Shape kShapes[] = {{4, 6}, {2, 5, 3}, {2, 3, 4, 5}};

// Squared error summed over dim 1, averaged over the positions of every
// other dim: the tensor is viewed as [A, S, B] with S = dim 1.
double reconstruction_reference(const std::vector<float>& pred, const std::vector<float>& target,
                                const Shape& shape) {
  const int64_t A = shape[0], S = shape[1], B = shape_numel(shape) / (A * S);
  double total = 0.0;
  for (int64_t a = 0; a < A; ++a)
    for (int64_t b = 0; b < B; ++b) {
      double summed = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        int64_t k = (a * S + s) * B + b;
        const double diff = static_cast<double>(pred[k]) - target[k];
        summed += diff * diff;
      }
      total += summed;
    }
  return total / static_cast<double>(A * B);
}

// Sum of p * (log p - log_q) over everything (0 log 0 = 0), over rows.
double kl_reference(const std::vector<float>& log_q, const std::vector<float>& p, int64_t D) {
  double total = 0.0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0.0f) total += p[i] * (std::log(static_cast<double>(p[i])) - log_q[i]);
  return total / static_cast<double>(p.size() / D);
}

// Rows of probabilities over the last dim, with every third entry exactly 0.
Tensor random_distribution(const Shape& shape, Generator& gen) {
  const int64_t D = shape.back();
  std::vector<float> p = gen.uniform_tensor(shape, 0.1f, 1.0f).to_vector();
  for (size_t i = 0; i < p.size(); i += 3) p[i] = 0.0f;
  for (size_t r = 0; r < p.size() / D; ++r) {
    double total = 0.0;
    for (int64_t j = 0; j < D; ++j) total += p[r * D + j];
    for (int64_t j = 0; j < D; ++j) p[r * D + j] = static_cast<float>(p[r * D + j] / total);
  }
  return Tensor::from_vector(p, shape);
}

}  // namespace

// ---- reconstruction_mse ----

TEST_CASE("reconstruction_mse sums over dim 1 and averages over the rest") {
  Generator gen(41);
  for (const Shape& shape : kShapes) {
    CAPTURE(shape_str(shape));
    Tensor pred = gen.uniform_tensor(shape, -1.0f, 1.0f);
    Tensor target = gen.uniform_tensor(shape, -1.0f, 1.0f);
    Tensor loss = reconstruction_mse(pred, target);
    CHECK(loss.numel() == 1);
    expect_close(loss, {reconstruction_reference(pred.to_vector(), target.to_vector(), shape)},
                 1e-6, 1e-5);
  }
  // A hand-computed case: [B=2, T=3, C=1], dim 1 = T is summed, B and C averaged.
  Tensor pred = Tensor::from_vector({1, 2, 3, 0, 0, 0}, {2, 3, 1});
  Tensor target = Tensor::zeros({2, 3, 1});
  expect_close(reconstruction_mse(pred, target), {(1.0 + 4.0 + 9.0) / 2.0});
}

TEST_CASE("reconstruction_mse backward reaches pred and target") {
  Generator gen(42);
  for (const Shape& shape : kShapes) {
    CAPTURE(shape_str(shape));
    Tensor pred = random_input(shape, gen), target = random_input(shape, gen);
    expect_gradients([](auto& in) { return reconstruction_mse(in[0], in[1]); }, {pred, target});
    Tensor fixed = gen.uniform_tensor(shape, -1.0f, 1.0f);
    expect_gradients([&](auto& in) { return reconstruction_mse(in[0], fixed); }, {pred});
    CHECK_FALSE(fixed.grad().defined());
  }
}

TEST_CASE("reconstruction_mse rejects mismatched shapes and rank 1") {
  CHECK_THROWS_AS(reconstruction_mse(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})),
                  std::invalid_argument);
  CHECK_THROWS_AS(reconstruction_mse(Tensor::zeros({4}), Tensor::zeros({4})),
                  std::invalid_argument);
}

// ---- kl_div_batchmean ----

TEST_CASE("kl_div_batchmean against a reference, zeros in p included") {
  Generator gen(51);
  for (const Shape& shape : kShapes) {
    CAPTURE(shape_str(shape));
    Tensor log_q = log_softmax(gen.uniform_tensor(shape, -2.0f, 2.0f));
    Tensor p = random_distribution(shape, gen);
    Tensor loss = kl_div_batchmean(log_q, p);
    CHECK(loss.numel() == 1);
    expect_close(loss, {kl_reference(log_q.to_vector(), p.to_vector(), shape.back())}, 1e-6, 1e-5);
  }
  // KL of a distribution with itself is 0.
  Tensor p = random_distribution({3, 4}, gen);
  expect_close(kl_div_batchmean(log(add(p, 1e-30f)), p), {0.0}, 1e-6);
}

TEST_CASE("kl_div_batchmean backward reaches log_q only") {
  Generator gen(52);
  for (const Shape& shape : kShapes) {
    CAPTURE(shape_str(shape));
    Tensor log_q = random_input(shape, gen, -3.0f, 0.0f);
    Tensor p = random_distribution(shape, gen);
    expect_gradients([&](auto& in) { return kl_div_batchmean(in[0], p); }, {log_q});
    // Composed with log_softmax, as the Hessian score uses it.
    Tensor logits = random_input(shape, gen, -2.0f, 2.0f);
    expect_gradients([&](auto& in) { return kl_div_batchmean(log_softmax(in[0]), p); }, {logits});
  }
  Tensor log_q = random_input({2, 3}, gen, -3.0f, 0.0f);
  Tensor p = random_distribution({2, 3}, gen).set_requires_grad(true);
  kl_div_batchmean(log_q, p).backward();
  CHECK(log_q.grad().defined());
  CHECK_FALSE(p.grad().defined());
}

TEST_CASE("kl_div_batchmean rejects mismatched shapes") {
  CHECK_THROWS_AS(kl_div_batchmean(Tensor::zeros({2, 3}), Tensor::zeros({2, 4})),
                  std::invalid_argument);
}

// ---- cross_entropy ----

TEST_CASE("cross_entropy against a reference") {
  Generator gen(61);
  const int64_t B = 5, K = 7;
  Tensor logits = gen.uniform_tensor({B, K}, -3.0f, 3.0f);
  std::vector<int64_t> labels = {0, 6, 3, 3, 1};
  std::vector<float> v = logits.to_vector();
  double total = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    double max = v[b * K], sum = 0.0;
    for (int64_t k = 1; k < K; ++k) max = std::max(max, static_cast<double>(v[b * K + k]));
    for (int64_t k = 0; k < K; ++k) sum += std::exp(v[b * K + k] - max);
    total += -(v[b * K + labels[b]] - max - std::log(sum));
  }
  Tensor loss = cross_entropy(logits, Tensor::from_int64(labels, {B}));
  CHECK(loss.numel() == 1);
  expect_close(loss, {total / B}, 1e-6, 1e-5);
}

TEST_CASE("cross_entropy backward against finite differences") {
  Generator gen(62);
  Tensor logits = random_input({4, 3}, gen, -2.0f, 2.0f);
  Tensor labels = Tensor::from_int64({2, 0, 1, 2}, {4});
  expect_gradients([&](auto& in) { return cross_entropy(in[0], labels); }, {logits});
  Tensor one = random_input({1, 5}, gen, -2.0f, 2.0f);
  expect_gradients([](auto& in) { return cross_entropy(in[0], Tensor::from_int64({4}, {1})); },
                   {one});
}

TEST_CASE("cross_entropy checks labels") {
  Tensor logits = Tensor::zeros({2, 3});
  CHECK_THROWS_AS(cross_entropy(logits, Tensor::from_int64({0, 3}, {2})), std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(logits, Tensor::from_int64({-1, 0}, {2})), std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(logits, Tensor::from_int64({0, 1, 2}, {3})),
                  std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(logits, Tensor::from_vector({0, 1}, {2})), std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(Tensor::zeros({2, 3, 1}), Tensor::from_int64({0, 1}, {2})),
                  std::invalid_argument);
}
