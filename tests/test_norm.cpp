// Layer norm and batch norm: forward against double-precision loops, running
// statistics against PyTorch's update rule, backward against finite
// differences in train and eval mode.
#include <cmath>
#include <stdexcept>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

constexpr float kEps = 1e-5f;

// Layer norm over the last dim D; w/b empty for no affine.
std::vector<double> layer_norm_reference(const std::vector<float>& x, int64_t D,
                                         const std::vector<float>& w,
                                         const std::vector<float>& b) {
  const int64_t R = static_cast<int64_t>(x.size()) / D;
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < R; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < D; ++j) mean += x[r * D + j];
    mean /= D;
    for (int64_t j = 0; j < D; ++j) var += (x[r * D + j] - mean) * (x[r * D + j] - mean);
    var /= D;
    for (int64_t j = 0; j < D; ++j) {
      double v = (x[r * D + j] - mean) / std::sqrt(var + kEps);
      if (!w.empty()) v *= w[j];
      if (!b.empty()) v += b[j];
      y[r * D + j] = v;
    }
  }
  return y;
}

// Per-channel biased mean and variance of NCHW data.
struct ChannelStats {
  std::vector<double> mean, var;
};

ChannelStats channel_stats_reference(const std::vector<float>& x, int64_t N, int64_t C,
                                     int64_t HW) {
  ChannelStats s{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) s.mean[c] += x[(n * C + c) * HW + i];
  for (int64_t c = 0; c < C; ++c) s.mean[c] /= N * HW;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) {
        double d = x[(n * C + c) * HW + i] - s.mean[c];
        s.var[c] += d * d;
      }
  for (int64_t c = 0; c < C; ++c) s.var[c] /= N * HW;
  return s;
}

std::vector<double> batch_norm_reference(const std::vector<float>& x, const Shape& shape,
                                         const std::vector<double>& mean,
                                         const std::vector<double>& var,
                                         const std::vector<float>& w,
                                         const std::vector<float>& b) {
  const int64_t N = shape[0], C = shape[1], HW = shape[2] * shape[3];
  std::vector<double> y(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) {
        int64_t k = (n * C + c) * HW + i;
        double v = (x[k] - mean[c]) / std::sqrt(var[c] + kEps);
        if (!w.empty()) v *= w[c];
        if (!b.empty()) v += b[c];
        y[k] = v;
      }
  return y;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Normalization composed of primitive ops (each tested on its own): a
// reference whose autograd gradients hold for inputs too large for finite
// differences, where the kernels take their parallel paths.
Tensor normalize_composed(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor centered = sub(x, mean(x, dims, true));
  Tensor var = mean(mul(centered, centered), dims, true);
  return mul(centered, pow(add(var, kEps), -0.5f));
}

// Backward of f and of reference with the same upstream gradient; compares
// the gradients of every input.
void expect_same_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                           const std::function<Tensor(const std::vector<Tensor>&)>& reference,
                           std::vector<Tensor> inputs, Generator& gen) {
  for (Tensor& t : inputs) t.zero_grad();
  Tensor out = f(inputs);
  expect_close(out, reference(inputs), 1e-4, 1e-4, "forward");
  Tensor upstream = gen.uniform_tensor(out.shape(), -1.0f, 1.0f);
  out.backward(upstream);
  std::vector<Tensor> grads;
  for (Tensor& t : inputs) {
    grads.push_back(t.grad());
    t.zero_grad();
  }
  reference(inputs).backward(upstream);
  for (size_t k = 0; k < inputs.size(); ++k)
    expect_close(grads[k], inputs[k].grad(), 1e-4, 1e-3, "gradient of input " + std::to_string(k));
}

}  // namespace

// ---- layer norm ----

TEST_CASE("layer_norm forward against a reference, with and without affine") {
  Generator gen(11);
  for (const Shape& shape : {Shape{5, 7}, Shape{2, 3, 7}, Shape{4, 1}, Shape{7}}) {
    CAPTURE(shape_str(shape));
    const int64_t D = shape.back();
    Tensor x = gen.uniform_tensor(shape, -2.0f, 2.0f);
    Tensor w = gen.uniform_tensor({D}, 0.5f, 1.5f), b = gen.uniform_tensor({D}, -0.5f, 0.5f);
    std::vector<float> vx = x.to_vector(), vw = w.to_vector(), vb = b.to_vector();
    expect_close(layer_norm(x, w, b, kEps), layer_norm_reference(vx, D, vw, vb), 1e-5, 1e-4,
                 "affine");
    expect_close(layer_norm(x, Tensor(), Tensor(), kEps), layer_norm_reference(vx, D, {}, {}),
                 1e-5, 1e-4, "no affine");
    expect_close(layer_norm(x, w, Tensor(), kEps), layer_norm_reference(vx, D, vw, {}), 1e-5,
                 1e-4, "weight only");
    CHECK(layer_norm(x, w, b, kEps).shape() == shape);
  }
}

TEST_CASE("layer_norm stays accurate when the rows have a large offset") {
  Generator gen(12);
  Tensor x = add(gen.uniform_tensor({6, 9}, -1.0f, 1.0f), 500.0f);
  expect_close(layer_norm(x, Tensor(), Tensor(), kEps),
               layer_norm_reference(x.to_vector(), 9, {}, {}), 2e-4, 1e-4);
}

TEST_CASE("layer_norm backward against finite differences") {
  Generator gen(13);
  for (const Shape& shape : {Shape{4, 7}, Shape{2, 3, 5}}) {
    CAPTURE(shape_str(shape));
    const int64_t D = shape.back();
    Tensor x = random_input(shape, gen, -2.0f, 2.0f);
    Tensor w = random_input({D}, gen, 0.5f, 1.5f), b = random_input({D}, gen, -0.5f, 0.5f);
    expect_gradients([](auto& in) { return layer_norm(in[0], in[1], in[2], kEps); }, {x, w, b});
    expect_gradients([](auto& in) { return layer_norm(in[0], Tensor(), Tensor(), kEps); }, {x});
    expect_gradients([](auto& in) { return layer_norm(in[0], in[1], Tensor(), kEps); }, {x, w});
  }
}

TEST_CASE("layer_norm gives gradients only to inputs that require them") {
  Generator gen(14);
  Tensor x = gen.uniform_tensor({3, 7}, -1.0f, 1.0f);  // no grad
  Tensor w = random_input({7}, gen, 0.5f, 1.5f);
  Tensor b = gen.uniform_tensor({7}, -0.5f, 0.5f);     // no grad
  expect_gradients([&](auto& in) { return layer_norm(x, in[0], b, kEps); }, {w});
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("layer_norm on a large input matches its composition from primitive ops") {
  Generator gen(15);
  const int64_t D = 96;
  Tensor x = random_input({3, 130, D}, gen, -2.0f, 2.0f);  // past the parallel threshold
  Tensor w = random_input({D}, gen, 0.5f, 1.5f), b = random_input({D}, gen, -0.5f, 0.5f);
  expect_same_gradients([](auto& in) { return layer_norm(in[0], in[1], in[2], kEps); },
                        [](auto& in) {
                          return add(mul(normalize_composed(in[0], {-1}), in[1]), in[2]);
                        },
                        {x, w, b}, gen);
}

TEST_CASE("layer_norm rejects parameters of the wrong size") {
  Tensor x = Tensor::zeros({2, 5});
  CHECK_THROWS_AS(layer_norm(x, Tensor::ones({4}), Tensor(), kEps), std::invalid_argument);
  CHECK_THROWS_AS(layer_norm(x, Tensor(), Tensor::ones({5, 1}), kEps), std::invalid_argument);
}

// ---- batch norm ----

TEST_CASE("channel_stats is exact in double and stable under a large mean") {
  Generator gen(21);
  const int64_t N = 3, C = 3, HW = 15;
  // Spread 1 around 1000: E[x^2] - E[x]^2 in float would lose every digit.
  Tensor x = add(gen.uniform_tensor({N, C, 5, 3}, -1.0f, 1.0f), 1000.0f);
  ChannelStats ref = channel_stats_reference(x.to_vector(), N, C, HW);
  Tensor mean = Tensor::empty({C}), var = Tensor::empty({C});
  backend(Device::CPU).channel_stats(N, C, HW, x.data(), mean.data(), var.data());
  expect_close(mean, ref.mean, 0.0, 1e-7, "mean");
  expect_close(var, ref.var, 1e-6, 1e-5, "var");
}

TEST_CASE("batch_norm2d training normalizes with batch statistics and updates running stats") {
  Generator gen(22);
  const float momentum = 0.1f;
  for (const Shape& shape : {Shape{2, 3, 5, 3}, Shape{4, 2, 1, 1}, Shape{1, 5, 2, 3}}) {
    CAPTURE(shape_str(shape));
    const int64_t N = shape[0], C = shape[1], HW = shape[2] * shape[3];
    Tensor x = gen.uniform_tensor(shape, -2.0f, 3.0f);
    Tensor w = gen.uniform_tensor({C}, 0.5f, 1.5f), b = gen.uniform_tensor({C}, -0.5f, 0.5f);
    Tensor rm = gen.uniform_tensor({C}, -1.0f, 1.0f), rv = gen.uniform_tensor({C}, 0.5f, 2.0f);
    std::vector<float> vx = x.to_vector(), rm0 = rm.to_vector(), rv0 = rv.to_vector();
    ChannelStats s = channel_stats_reference(vx, N, C, HW);

    Tensor y = batch_norm2d(x, w, b, rm, rv, true, momentum, kEps);
    expect_close(y, batch_norm_reference(vx, shape, s.mean, s.var, w.to_vector(), b.to_vector()),
                 1e-5, 1e-4, "affine");
    const double n = static_cast<double>(N * HW);
    std::vector<double> rm_ref(C), rv_ref(C);
    for (int64_t c = 0; c < C; ++c) {
      rm_ref[c] = (1 - momentum) * rm0[c] + momentum * s.mean[c];
      rv_ref[c] = (1 - momentum) * rv0[c] + momentum * s.var[c] * n / (n - 1);
    }
    expect_close(rm, rm_ref, 1e-6, 1e-5, "running_mean");
    expect_close(rv, rv_ref, 1e-6, 1e-5, "running_var");

    // Without affine parameters and without running buffers.
    expect_close(batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), true, momentum, kEps),
                 batch_norm_reference(vx, shape, s.mean, s.var, {}, {}), 1e-5, 1e-4,
                 "no affine");
  }
}

TEST_CASE("batch_norm2d eval uses the running buffers and leaves them unchanged") {
  Generator gen(23);
  const Shape shape{2, 3, 5, 3};
  Tensor x = gen.uniform_tensor(shape, -2.0f, 2.0f);
  Tensor w = gen.uniform_tensor({3}, 0.5f, 1.5f), b = gen.uniform_tensor({3}, -0.5f, 0.5f);
  Tensor rm = gen.uniform_tensor({3}, -1.0f, 1.0f), rv = gen.uniform_tensor({3}, 0.5f, 2.0f);
  std::vector<float> rm0 = rm.to_vector(), rv0 = rv.to_vector();
  Tensor y = batch_norm2d(x, w, b, rm, rv, false, 0.1f, kEps);
  expect_close(y, batch_norm_reference(x.to_vector(), shape, to_double(rm0), to_double(rv0),
                                       w.to_vector(), b.to_vector()),
               1e-5, 1e-4, "affine");
  expect_close(batch_norm2d(x, Tensor(), Tensor(), rm, rv, false, 0.1f, kEps),
               batch_norm_reference(x.to_vector(), shape, to_double(rm0), to_double(rv0), {}, {}),
               1e-5, 1e-4, "no affine");
  expect_close(rm, to_double(rm0), 0.0, 0.0, "running_mean");
  expect_close(rv, to_double(rv0), 0.0, 0.0, "running_var");
}

TEST_CASE("batch_norm2d training backward against finite differences") {
  Generator gen(24);
  for (const Shape& shape : {Shape{2, 3, 5, 3}, Shape{3, 2, 1, 1}}) {
    CAPTURE(shape_str(shape));
    const int64_t C = shape[1];
    Tensor x = random_input(shape, gen, -2.0f, 2.0f);
    Tensor w = random_input({C}, gen, 0.5f, 1.5f), b = random_input({C}, gen, -0.5f, 0.5f);
    Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
    expect_gradients(
        [&](auto& in) { return batch_norm2d(in[0], in[1], in[2], rm, rv, true, 0.1f, kEps); },
        {x, w, b});
    expect_gradients(
        [](auto& in) {
          return batch_norm2d(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1f, kEps);
        },
        {x});
  }
}

TEST_CASE("batch_norm2d eval backward against finite differences") {
  Generator gen(25);
  const Shape shape{2, 3, 5, 3};
  Tensor x = random_input(shape, gen, -2.0f, 2.0f);
  Tensor w = random_input({3}, gen, 0.5f, 1.5f), b = random_input({3}, gen, -0.5f, 0.5f);
  Tensor rm = gen.uniform_tensor({3}, -1.0f, 1.0f), rv = gen.uniform_tensor({3}, 0.5f, 2.0f);
  expect_gradients(
      [&](auto& in) { return batch_norm2d(in[0], in[1], in[2], rm, rv, false, 0.1f, kEps); },
      {x, w, b});
  expect_gradients(
      [&](auto& in) { return batch_norm2d(in[0], Tensor(), Tensor(), rm, rv, false, 0.1f, kEps); },
      {x});
}

TEST_CASE("batch_norm2d on a large input matches its composition from primitive ops") {
  Generator gen(27);
  const int64_t C = 3;
  Tensor x = random_input({4, C, 61, 53}, gen, -2.0f, 3.0f);  // past the parallel threshold
  Tensor w = random_input({C}, gen, 0.5f, 1.5f), b = random_input({C}, gen, -0.5f, 0.5f);
  Tensor rm = gen.uniform_tensor({C}, -1.0f, 1.0f), rv = gen.uniform_tensor({C}, 0.5f, 2.0f);
  auto affine = [](const Tensor& y, const Tensor& w, const Tensor& b) {
    return add(mul(y, reshape(w, {C, 1, 1})), reshape(b, {C, 1, 1}));
  };
  expect_same_gradients(
      [&](auto& in) {
        return batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1f, kEps);
      },
      [&](auto& in) { return affine(normalize_composed(in[0], {0, 2, 3}), in[1], in[2]); },
      {x, w, b}, gen);
  expect_same_gradients(
      [&](auto& in) { return batch_norm2d(in[0], in[1], in[2], rm, rv, false, 0.1f, kEps); },
      [&](auto& in) {
        Tensor normalized = mul(sub(in[0], reshape(rm, {C, 1, 1})),
                                reshape(pow(add(rv, kEps), -0.5f), {C, 1, 1}));
        return affine(normalized, in[1], in[2]);
      },
      {x, w, b}, gen);
}

TEST_CASE("batch_norm2d gives gradients only to inputs that require them") {
  Generator gen(26);
  Tensor x = gen.uniform_tensor({2, 3, 2, 2}, -1.0f, 1.0f);  // no grad
  Tensor w = random_input({3}, gen, 0.5f, 1.5f), b = random_input({3}, gen, -0.5f, 0.5f);
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  for (bool training : {true, false}) {
    CAPTURE(training);
    expect_gradients(
        [&](auto& in) { return batch_norm2d(x, in[0], in[1], rm, rv, training, 0.1f, kEps); },
        {w, b});
    CHECK_FALSE(x.grad().defined());
  }
}

TEST_CASE("batch_norm2d rejects bad shapes and modes") {
  Tensor x = Tensor::zeros({2, 3, 2, 2});
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  CHECK_THROWS_AS(batch_norm2d(Tensor::zeros({2, 3, 4}), Tensor(), Tensor(), rm, rv, true, 0.1f,
                               kEps),
                  std::invalid_argument);
  CHECK_THROWS_AS(batch_norm2d(x, Tensor::ones({4}), Tensor(), rm, rv, true, 0.1f, kEps),
                  std::invalid_argument);
  CHECK_THROWS_AS(batch_norm2d(x, Tensor(), Tensor(), Tensor::zeros({2}), rv, true, 0.1f, kEps),
                  std::invalid_argument);
  CHECK_THROWS_AS(batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), false, 0.1f, kEps),
                  std::invalid_argument);
  // One value per channel has no batch variance.
  CHECK_THROWS_AS(batch_norm2d(Tensor::zeros({1, 3, 1, 1}), Tensor(), Tensor(), rm, rv, true,
                               0.1f, kEps),
                  std::invalid_argument);
}
