// Softmax and log-softmax over the last dim: forward against double-precision
// loops, stability under large offsets, backward against finite differences.
#include <cmath>
#include <stdexcept>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

// Softmax (or log-softmax) of each row of length D, in double.
std::vector<double> softmax_reference(const std::vector<float>& x, int64_t D, bool log_space) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / D; ++r) {
    const float* xr = x.data() + r * D;
    double max = xr[0];
    for (int64_t j = 1; j < D; ++j) max = std::max(max, static_cast<double>(xr[j]));
    double total = 0.0;
    for (int64_t j = 0; j < D; ++j) total += std::exp(xr[j] - max);
    for (int64_t j = 0; j < D; ++j)
      y[r * D + j] = log_space ? xr[j] - max - std::log(total) : std::exp(xr[j] - max) / total;
  }
  return y;
}

// Multiples of 1/64 in [-2, 2]: still exact in float after adding +-1000, so
// an offset input holds exactly the same differences between logits.
Tensor grid_values(const Shape& shape, Generator& gen) {
  std::vector<float> v(shape_numel(shape));
  for (float& x : v) x = static_cast<float>(gen.randint(257) - 128) / 64.0f;
  return Tensor::from_vector(v, shape);
}

}  // namespace

TEST_CASE("softmax and log_softmax forward against a reference") {
  Generator gen(31);
  for (const Shape& shape : {Shape{4, 7}, Shape{2, 3, 5}, Shape{3, 1}, Shape{9}}) {
    CAPTURE(shape_str(shape));
    const int64_t D = shape.back();
    Tensor x = gen.uniform_tensor(shape, -4.0f, 4.0f);
    std::vector<float> v = x.to_vector();
    Tensor y = softmax(x);
    CHECK(y.shape() == shape);
    expect_close(y, softmax_reference(v, D, false), 1e-6, 1e-5, "softmax");
    expect_close(log_softmax(x), softmax_reference(v, D, true), 1e-5, 1e-5, "log_softmax");
    // Every row is a distribution.
    std::vector<float> p = y.to_vector();
    for (size_t r = 0; r < p.size() / D; ++r) {
      double total = 0.0;
      for (int64_t j = 0; j < D; ++j) total += p[r * D + j];
      CHECK(total == doctest::Approx(1.0).epsilon(1e-6));
    }
  }
}

TEST_CASE("softmax is invariant to large offsets of a row") {
  Generator gen(32);
  Tensor x = grid_values({5, 11}, gen);
  std::vector<double> ref = softmax_reference(x.to_vector(), 11, false);
  std::vector<double> log_ref = softmax_reference(x.to_vector(), 11, true);
  for (float offset : {1000.0f, -1000.0f}) {
    CAPTURE(offset);
    Tensor shifted = add(x, offset);
    expect_close(softmax(shifted), ref, 1e-6, 1e-5, "softmax");
    expect_close(log_softmax(shifted), log_ref, 1e-5, 1e-5, "log_softmax");
  }
}

TEST_CASE("softmax handles rows whose logits differ by hundreds") {
  // exp(-300) underflows to 0 in float: the result must be 0, not NaN.
  Tensor x = Tensor::from_vector({0.0f, -300.0f, 50.0f, 100.0f, 88.0f, 89.0f, 90.0f, -1e4f},
                                 {2, 4});
  std::vector<float> v = x.to_vector();
  expect_close(softmax(x), softmax_reference(v, 4, false), 1e-7, 1e-5, "softmax");
  expect_close(log_softmax(x), softmax_reference(v, 4, true), 1e-4, 1e-6, "log_softmax");
}

TEST_CASE("softmax and log_softmax backward against finite differences") {
  Generator gen(33);
  for (const Shape& shape : {Shape{3, 7}, Shape{2, 2, 5}, Shape{4, 1}}) {
    CAPTURE(shape_str(shape));
    Tensor x = random_input(shape, gen, -2.0f, 2.0f);
    expect_gradients([](auto& in) { return softmax(in[0]); }, {x});
    expect_gradients([](auto& in) { return log_softmax(in[0]); }, {x});
  }
}

TEST_CASE("softmax and log_softmax gradients are invariant to large offsets") {
  Generator gen(34);
  Tensor x = grid_values({3, 6}, gen).set_requires_grad(true);
  Tensor shifted = add(x.detach(), 1000.0f).set_requires_grad(true);
  Tensor w = gen.uniform_tensor({3, 6}, -1.0f, 1.0f);
  for (auto op : {&softmax, &log_softmax}) {
    x.zero_grad();
    shifted.zero_grad();
    op(x).backward(w);
    op(shifted).backward(w);
    expect_close(shifted.grad(), x.grad(), 1e-6, 1e-5);
  }
}

TEST_CASE("softmax on a large input matches the reference and exp(x) / sum(exp(x))") {
  Generator gen(35);
  const int64_t D = 100;
  Tensor x = random_input({400, D}, gen, -3.0f, 3.0f);  // past the parallel threshold
  Tensor y = softmax(x), log_y = log_softmax(x);
  expect_close(y, softmax_reference(x.to_vector(), D, false), 1e-6, 1e-5, "softmax");
  expect_close(log_y, softmax_reference(x.to_vector(), D, true), 1e-5, 1e-5, "log_softmax");
  // Gradients against the same function composed of primitive ops.
  Tensor w = gen.uniform_tensor({400, D}, -1.0f, 1.0f);
  auto composed_log = [](const Tensor& t) { return sub(t, log(sum(exp(t), {-1}, true))); };
  for (bool log_space : {false, true}) {
    CAPTURE(log_space);
    x.zero_grad();
    (log_space ? log_softmax(x) : softmax(x)).backward(w);
    Tensor grad = x.grad();
    x.zero_grad();
    (log_space ? composed_log(x) : exp(composed_log(x))).backward(w);
    expect_close(grad, x.grad(), 1e-5, 1e-4);
  }
}

TEST_CASE("softmax rejects an empty last dim") {
  CHECK_THROWS_AS(softmax(Tensor::zeros({3, 0})), std::invalid_argument);
  CHECK_THROWS_AS(log_softmax(Tensor::zeros({3, 0})), std::invalid_argument);
}
