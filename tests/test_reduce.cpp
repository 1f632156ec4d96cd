// Reductions: sum/mean over dims and sum_to/broadcast_to, forward against
// double-precision loops, backward against finite differences.
#include <algorithm>
#include <stdexcept>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

// Sum of x over `dims` (non-negative, any order), keeping them as size 1.
std::vector<double> sum_ref(const Tensor& x, const std::vector<int64_t>& dims, Shape& kept) {
  const Shape& shape = x.shape();
  kept = shape;
  for (int64_t d : dims) kept[d] = 1;
  std::vector<float> v = x.to_vector();
  std::vector<double> out(shape_numel(kept), 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rem = i, o = 0, stride = 1;
    for (size_t d = shape.size(); d-- > 0;) {
      int64_t idx = rem % shape[d];
      rem /= shape[d];
      if (kept[d] != 1) o += idx * stride;
      stride *= kept[d];
    }
    out[o] += v[i];
  }
  return out;
}

Shape squeeze(const Shape& kept, const std::vector<int64_t>& dims) {
  Shape out;
  for (size_t d = 0; d < kept.size(); ++d)
    if (std::find(dims.begin(), dims.end(), static_cast<int64_t>(d)) == dims.end())
      out.push_back(kept[d]);
  return out;
}

std::vector<double> scaled(std::vector<double> v, double s) {
  for (double& e : v) e *= s;
  return v;
}

}  // namespace

TEST_CASE("sum and mean over single, multiple and negative dims, keepdim both ways") {
  Generator gen(1);
  Tensor x = random_input({3, 4, 5, 2}, gen);
  struct Case {
    std::vector<int64_t> dims, wrapped;
  };
  const Case cases[] = {
      {{0}, {0}},        {{2}, {2}},        {{-1}, {3}},          {{1, 3}, {1, 3}},
      {{-3, 0}, {1, 0}}, {{0, 1, 2, 3}, {0, 1, 2, 3}}, {{3, 1, 2}, {3, 1, 2}},
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.dims));
    Shape kept;
    std::vector<double> ref = sum_ref(x, c.wrapped, kept);
    int64_t count = 1;
    for (int64_t d : c.wrapped) count *= x.size(d);
    Tensor s_keep = sum(x, c.dims, true), s = sum(x, c.dims);
    CHECK(s_keep.shape() == kept);
    CHECK(s.shape() == squeeze(kept, c.wrapped));
    expect_close(s_keep, ref, 1e-5, 1e-5, "sum keepdim");
    expect_close(s, ref, 1e-5, 1e-5, "sum");
    Tensor m_keep = mean(x, c.dims, true), m = mean(x, c.dims);
    CHECK(m_keep.shape() == kept);
    CHECK(m.shape() == squeeze(kept, c.wrapped));
    expect_close(m, scaled(ref, 1.0 / count), 1e-6, 1e-5, "mean");
    expect_gradients([&](auto& in) { return sum(in[0], c.dims, true); }, {x});
    expect_gradients([&](auto& in) { return sum(in[0], c.dims, false); }, {x});
    expect_gradients([&](auto& in) { return mean(in[0], c.dims, false); }, {x});
  }
  CHECK_THROWS_AS(sum(x, {4}), std::invalid_argument);
  CHECK_THROWS_AS(sum(x, {-5}), std::invalid_argument);
  CHECK_THROWS_AS(mean(x, {1, -3}), std::invalid_argument);  // the same dim twice
}

TEST_CASE("full sum and mean give one-element tensors of shape []") {
  Generator gen(2);
  Tensor x = random_input({3, 7, 2}, gen);
  Shape kept;
  std::vector<double> ref = sum_ref(x, {0, 1, 2}, kept);
  Tensor s = sum(x), m = mean(x);
  CHECK(s.shape() == Shape{});
  CHECK(m.shape() == Shape{});
  expect_close(s, ref, 1e-5, 1e-6, "sum");
  expect_close(m, scaled(ref, 1.0 / 42), 1e-6, 1e-6, "mean");
  expect_gradients([](auto& in) { return sum(in[0]); }, {x});
  expect_gradients([](auto& in) { return mean(in[0]); }, {x});
  x.zero_grad();  // drop what the gradient checks left
  sum(x).backward();
  expect_close(x.grad(), std::vector<double>(42, 1.0), 0.0, 0.0, "d sum / dx");
}

TEST_CASE("sum_to and broadcast_to, both directions") {
  Generator gen(3);
  struct Case {
    Shape big, small;
  };
  const Case cases[] = {
      {{2, 3, 4}, {3, 4}},     // leading dim dropped
      {{2, 3, 4}, {2, 1, 4}},  // middle dim kept as 1
      {{2, 3, 4}, {1, 3, 1}},  // per channel
      {{5, 3}, {}},            // to a scalar
      {{4, 1, 5}, {1, 5}},     // size-1 dims on both sides
      {{3, 4}, {3, 4}},        // same shape: identity
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.big));
    CAPTURE(shape_str(c.small));
    Tensor x = random_input(c.big, gen);
    // sum_to: a sum over the dims where the aligned small shape is 1.
    Shape aligned(c.big.size() - c.small.size(), 1);
    aligned.insert(aligned.end(), c.small.begin(), c.small.end());
    std::vector<int64_t> dims;
    for (size_t d = 0; d < c.big.size(); ++d)
      if (aligned[d] == 1) dims.push_back(static_cast<int64_t>(d));
    Shape kept;
    Tensor reduced = sum_to(x, c.small);
    CHECK(reduced.shape() == c.small);
    expect_close(reduced, sum_ref(x, dims, kept), 1e-5, 1e-5, "sum_to");
    expect_gradients([&](auto& in) { return sum_to(in[0], c.small); }, {x});

    // broadcast_to: every output element reads the small tensor at its
    // index with broadcast dims held at 0.
    Tensor y = random_input(c.small, gen);
    Tensor expanded = broadcast_to(y, c.big);
    CHECK(expanded.shape() == c.big);
    std::vector<float> vy = y.to_vector();
    std::vector<double> ref(shape_numel(c.big));
    for (int64_t i = 0; i < static_cast<int64_t>(ref.size()); ++i) {
      int64_t rem = i, off = 0, stride = 1;
      for (size_t d = c.big.size(); d-- > 0;) {
        int64_t idx = rem % c.big[d];
        rem /= c.big[d];
        if (aligned[d] != 1) off += idx * stride;
        stride *= aligned[d];
      }
      ref[i] = vy[off];
    }
    expect_close(expanded, ref, 0.0, 0.0, "broadcast_to");
    expect_gradients([&](auto& in) { return broadcast_to(in[0], c.big); }, {y});
  }
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_AS(sum_to(x, {2}), std::invalid_argument);
  CHECK_THROWS_AS(sum_to(x, {1, 2, 3}), std::invalid_argument);
  CHECK_THROWS_AS(broadcast_to(x, {3}), std::invalid_argument);
  CHECK_THROWS_AS(broadcast_to(x, {4, 3}), std::invalid_argument);
}

TEST_CASE("large reductions against a double reference") {
  Generator gen(4);
  // Many outputs each summing a strided column or a contiguous row, and few
  // outputs over many inputs (the per-thread partial sums path).
  struct Case {
    Shape big, small;
    std::vector<int64_t> dims;
  };
  const Case cases[] = {
      {{64, 3000}, {1, 3000}, {0}},
      {{3000, 64}, {3000, 1}, {1}},
      {{20000, 3}, {1, 3}, {0}},
      {{3, 20000}, {3, 1}, {1}},
      {{2000, 3, 40}, {1, 3, 1}, {0, 2}},
      {{50, 400, 3}, {50, 1, 3}, {1}},
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.big));
    Tensor x = gen.uniform_tensor(c.big, -1.0f, 1.0f);
    Shape kept;
    expect_close(sum_to(x, c.small), sum_ref(x, c.dims, kept), 1e-4, 1e-5, "sum_to");
  }
  Tensor x = gen.uniform_tensor({1000, 1000}, -1.0f, 1.0f);
  std::vector<float> v = x.to_vector();
  double ref = 0.0;
  for (float e : v) ref += e;
  expect_close(sum(x), std::vector<double>{ref}, 1e-3, 1e-6, "full sum");
  expect_close(mean(x), std::vector<double>{ref / 1e6}, 1e-8, 1e-5, "full mean");
  // The backward of a large sum is a large broadcast.
  Tensor w = random_input({3000, 64}, gen);
  sum(w, {1}).backward(Tensor::full({3000}, 0.5f));
  expect_close(w.grad(), std::vector<double>(3000 * 64, 0.5), 0.0, 0.0, "broadcast gradient");
}
