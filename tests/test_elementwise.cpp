// Element-wise ops with broadcasting: forward against plain loops, backward
// against finite differences.
#include <cmath>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

// Reference broadcasting: value of a broadcast operand at output index i.
double at_broadcast(const std::vector<float>& v, const Shape& shape, const Shape& out, int64_t i) {
  int64_t off = 0, stride = 1;
  size_t n = out.size(), k = shape.size();
  for (size_t d = 0; d < n; ++d) {
    size_t dd = n - 1 - d;
    int64_t idx = i % out[dd];
    i /= out[dd];
    if (d < k) {
      int64_t size = shape[k - 1 - d];
      if (size != 1) off += idx * stride;
      stride *= size;
    }
  }
  return v[off];
}

struct BroadcastCase {
  Shape a, b;
};

const BroadcastCase kCases[] = {
    {{3, 4}, {3, 4}},           // same shape
    {{2, 3, 5}, {}},            // scalar
    {{}, {2, 3, 5}},            // scalar on the left
    {{1, 1, 1}, {2, 3, 5}},     // one element, full rank
    {{2, 3, 5}, {5}},           // trailing dims
    {{2, 3, 4, 5}, {3, 1, 1}},  // per channel (NCHW)
    {{1, 3, 1}, {2, 1, 7}},     // both sides broadcast
    {{4, 1}, {1, 5}},           // outer product
};

}  // namespace

TEST_CASE("binary ops broadcast forward against a reference") {
  Generator gen(1);
  for (const auto& c : kCases) {
    Tensor a = gen.uniform_tensor(c.a, 0.5f, 2.0f), b = gen.uniform_tensor(c.b, 0.5f, 2.0f);
    Shape out = broadcast_shapes(c.a, c.b);
    std::vector<float> va = a.to_vector(), vb = b.to_vector();
    int64_t n = shape_numel(out);
    std::vector<double> add_ref(n), sub_ref(n), mul_ref(n), div_ref(n);
    for (int64_t i = 0; i < n; ++i) {
      double x = at_broadcast(va, c.a, out, i), y = at_broadcast(vb, c.b, out, i);
      add_ref[i] = x + y; sub_ref[i] = x - y; mul_ref[i] = x * y; div_ref[i] = x / y;
    }
    expect_close(add(a, b), add_ref, 1e-6, 1e-6, "add");
    expect_close(sub(a, b), sub_ref, 1e-6, 1e-6, "sub");
    expect_close(mul(a, b), mul_ref, 1e-6, 1e-6, "mul");
    expect_close(div(a, b), div_ref, 1e-6, 1e-6, "div");
    CHECK(add(a, b).shape() == out);
  }
}

TEST_CASE("binary ops backward against finite differences, broadcasting included") {
  Generator gen(2);
  for (const auto& c : kCases) {
    CAPTURE(shape_str(c.a));
    CAPTURE(shape_str(c.b));
    Tensor a = random_input(c.a, gen, 0.5f, 2.0f), b = random_input(c.b, gen, 0.5f, 2.0f);
    expect_gradients([](auto& in) { return add(in[0], in[1]); }, {a, b});
    expect_gradients([](auto& in) { return sub(in[0], in[1]); }, {a, b});
    expect_gradients([](auto& in) { return mul(in[0], in[1]); }, {a, b});
    expect_gradients([](auto& in) { return div(in[0], in[1]); }, {a, b});
  }
}

TEST_CASE("unary ops forward against std math") {
  Generator gen(3);
  Tensor x = gen.uniform_tensor({7, 9}, -3.0f, 3.0f);
  Tensor pos = gen.uniform_tensor({7, 9}, 0.2f, 3.0f);
  std::vector<float> v = x.to_vector(), p = pos.to_vector();
  auto ref = [&](const std::vector<float>& in, double (*f)(double)) {
    std::vector<double> out(in.size());
    for (size_t i = 0; i < in.size(); ++i) out[i] = f(in[i]);
    return out;
  };
  expect_close(neg(x), ref(v, [](double t) { return -t; }));
  expect_close(exp(x), ref(v, [](double t) { return std::exp(t); }), 1e-5, 1e-5);
  expect_close(log(pos), ref(p, [](double t) { return std::log(t); }), 1e-6, 1e-5);
  expect_close(sqrt(pos), ref(p, [](double t) { return std::sqrt(t); }), 1e-6, 1e-5);
  expect_close(pow(pos, 2.4f), ref(p, [](double t) { return std::pow(t, 2.4); }), 1e-5, 1e-5);
  expect_close(abs(x), ref(v, [](double t) { return std::fabs(t); }));
  expect_close(relu(x), ref(v, [](double t) { return t > 0 ? t : 0.0; }));
  expect_close(relu6(mul(x, 3.0f)), ref(v, [](double t) { return std::min(std::max(3 * t, 0.0), 6.0); }), 1e-5);
  expect_close(gelu(x), ref(v, [](double t) { return 0.5 * t * (1 + std::erf(t / std::sqrt(2.0))); }), 1e-6, 1e-5);
  expect_close(sigmoid(x), ref(v, [](double t) { return 1 / (1 + std::exp(-t)); }), 1e-6, 1e-5);
  expect_close(clamp(x, -1.0f, 0.5f), ref(v, [](double t) { return std::min(std::max(t, -1.0), 0.5); }));
  expect_close(add(x, 1.5f), ref(v, [](double t) { return t + 1.5; }));
  expect_close(mul(x, -2.0f), ref(v, [](double t) { return t * -2.0; }));
  expect_close(floor_ste(x), ref(v, [](double t) { return std::floor(t); }));
}

TEST_CASE("round_ste rounds half to even as torch.round") {
  Tensor x = Tensor::from_vector({-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 0.49f, -0.51f}, {8});
  expect_close(round_ste(x), std::vector<double>{-2, -2, -0, 0, 2, 2, 0, -1});
}

TEST_CASE("unary ops backward against finite differences") {
  Generator gen(4);
  // Inputs kept away from kinks (0 for relu/abs, 0 and 6 for relu6, clamp
  // bounds) where a central difference straddles two slopes.
  std::vector<float> away(30);
  for (size_t i = 0; i < away.size(); ++i) {
    float mag = 0.1f + 0.1f * static_cast<float>(i % 25);
    away[i] = (i % 2 ? mag : -mag) + (i % 3 == 0 ? 0.03f : -0.03f);
  }
  Tensor x = Tensor::from_vector(away, {5, 6}).set_requires_grad(true);
  Tensor pos = random_input({5, 6}, gen, 0.3f, 2.0f);
  using Fn = Tensor (*)(const Tensor&);
  for (Fn f : {Fn(neg), Fn(exp), Fn(abs), Fn(relu), Fn(gelu), Fn(sigmoid)}) {
    expect_gradients([f](auto& in) { return f(in[0]); }, {x});
  }
  expect_gradients([](auto& in) { return relu6(mul(in[0], 4.0f)); }, {x});
  expect_gradients([](auto& in) { return log(in[0]); }, {pos});
  expect_gradients([](auto& in) { return sqrt(in[0]); }, {pos});
  expect_gradients([](auto& in) { return pow(in[0], 2.4f); }, {pos});
  expect_gradients([](auto& in) { return pow(in[0], -1.0f); }, {pos});
  expect_gradients([](auto& in) { return clamp(in[0], -0.75f, 0.65f); }, {x});
  expect_gradients([](auto& in) { return add(in[0], 0.3f); }, {x});
  expect_gradients([](auto& in) { return mul(in[0], -1.7f); }, {x});
}

TEST_CASE("round and floor pass the gradient straight through") {
  Generator gen(5);
  Tensor x = random_input({4, 5}, gen, -3.0f, 3.0f);
  Tensor w = gen.uniform_tensor({4, 5}, -1.0f, 1.0f);
  round_ste(x).backward(w);
  expect_close(x.grad(), w);
  x.zero_grad();
  floor_ste(x).backward(w);
  expect_close(x.grad(), w);
}

TEST_CASE("where selects by mask and routes gradients") {
  Generator gen(6);
  Tensor a = random_input({3, 4}, gen), b = random_input({3, 4}, gen);
  std::vector<float> m(12);
  for (size_t i = 0; i < m.size(); ++i) m[i] = (i * 7) % 3 == 0 ? 1.0f : 0.0f;
  Tensor mask = Tensor::from_vector(m, {3, 4});
  std::vector<float> va = a.to_vector(), vb = b.to_vector();
  std::vector<double> ref(12);
  for (size_t i = 0; i < 12; ++i) ref[i] = m[i] ? va[i] : vb[i];
  expect_close(where(mask, a, b), ref);
  expect_gradients([&](auto& in) { return where(mask, in[0], in[1]); }, {a, b});
}

// The bulk mask draw of dropout and QDrop input mixing: bit for bit the
// draws of uniform() one at a time, and the generator left in the same state.
TEST_CASE("Generator::fill_bernoulli equals uniform() < p draw by draw") {
  const double level = 1.0 / 16777216.0;  // uniform() takes the values k * level
  std::vector<double> probabilities = {0.5,   0.3,         0.0,         -0.25,
                                       1.0,   1.5,         level,       0.5 * level,
                                       1.0 - level, 1.0 - 0.5 * level, 0.1f + 0.0,
                                       std::nan("")};
  // p exactly on, just below and just above values that the stream draws, so
  // that the draws at the threshold are among the checked ones.
  Generator peek(77);
  for (int i = 0; i < 3; ++i) {
    const double u = peek.uniform();
    for (double p : {u, std::nextafter(u, 0.0), std::nextafter(u, 2.0)}) probabilities.push_back(p);
  }
  for (double p : probabilities) {
    for (int64_t n : {0, 1, 1023, 1024, 2500}) {
      CAPTURE(p);
      CAPTURE(n);
      Generator bulk(77), single(77);
      std::vector<float> got(n + 1, -1.0f);
      bulk.fill_bernoulli(got.data(), n, p, 2.5f, -0.5f);
      for (int64_t i = 0; i < n; ++i) REQUIRE(got[i] == (single.uniform() < p ? 2.5f : -0.5f));
      CHECK(got[n] == -1.0f);  // nothing written past n
      CHECK(bulk.next_u64() == single.next_u64());
    }
  }
  // About p of a large mask are hits.
  Generator gen(5);
  std::vector<float> mask(1 << 16);
  gen.fill_bernoulli(mask.data(), static_cast<int64_t>(mask.size()), 0.25);
  double ones = 0;
  for (float m : mask) ones += m;
  CHECK(ones / mask.size() == doctest::Approx(0.25).epsilon(0.02));
}

TEST_CASE("dropout zeroes about p of the elements and rescales the rest") {
  Generator gen(8);
  Tensor x = Tensor::ones({100, 100});
  std::vector<float> y = dropout(x, 0.3f, true, gen).to_vector();
  int zeros = 0;
  for (float v : y) {
    if (v == 0.0f) ++zeros;
    else CHECK(v == doctest::Approx(1.0f / 0.7f));
  }
  CHECK(zeros > 2700);
  CHECK(zeros < 3300);
  Tensor same = dropout(x, 0.3f, false, gen);
  CHECK(same.impl() == x.impl());
  Tensor xr = random_input({6, 7}, gen);
  // Same generator state for each evaluation: the mask is part of the op.
  expect_gradients([](auto& in) { Generator g(99); return dropout(in[0], 0.4f, true, g); }, {xr});
}
