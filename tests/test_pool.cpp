// Pooling ops: max, average and adaptive average pooling forward against
// plain loop references (PyTorch semantics), backward against finite
// differences.
#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

struct PoolCase {
  const char* name;
  Shape x;
  int64_t kernel, stride, padding;
};

const PoolCase kCases[] = {
    {"3x3 stride 2 padded, odd sizes", {2, 3, 7, 9}, 3, 2, 1},
    {"2x2 stride 2", {1, 2, 8, 6}, 2, 2, 0},
    {"3x3 stride 1 padded", {2, 2, 6, 7}, 3, 1, 1},
    {"stride larger than kernel, padded", {1, 2, 8, 7}, 2, 3, 1},
    {"large kernel and padding", {1, 1, 6, 5}, 4, 2, 2},
};

int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// Plain loops over every window: reduce(values, padded_count) per output, the
// values being the in-bounds inputs in row-major order.
template <class Reduce>
std::vector<double> pool_reference(const Tensor& x, const PoolCase& c, Reduce reduce) {
  const Shape& s = x.shape();
  const int64_t H = s[2], W = s[3];
  const int64_t OH = pool_out(H, c.kernel, c.stride, c.padding);
  const int64_t OW = pool_out(W, c.kernel, c.stride, c.padding);
  std::vector<float> v = x.to_vector();
  std::vector<double> y;
  for (int64_t plane = 0; plane < s[0] * s[1]; ++plane)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        std::vector<double> values;
        int64_t padded_count = 0;
        for (int64_t kh = 0; kh < c.kernel; ++kh)
          for (int64_t kw = 0; kw < c.kernel; ++kw) {
            int64_t ih = oh * c.stride - c.padding + kh, iw = ow * c.stride - c.padding + kw;
            // PyTorch counts padding cells, but not cells beyond the padding.
            if (ih < H + c.padding && iw < W + c.padding) ++padded_count;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) values.push_back(v[(plane * H + ih) * W + iw]);
          }
        y.push_back(reduce(values, padded_count));
      }
  return y;
}

double max_of(const std::vector<double>& values, int64_t) {
  return *std::max_element(values.begin(), values.end());
}

double sum_of(const std::vector<double>& values) {
  double total = 0.0;
  for (double v : values) total += v;
  return total;
}

// Distinct values at least 0.05 apart in random order: finite differences
// with step 0.01 never move the argmax of a max-pool window.
Tensor distinct_input(const Shape& shape, Generator& gen) {
  const int64_t n = shape_numel(shape);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = 0.05f * static_cast<float>(i - n / 2);
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[gen.randint(i + 1)]);
  return Tensor::from_vector(v, shape).set_requires_grad(true);
}

std::vector<double> adaptive_reference(const Tensor& x, int64_t OH, int64_t OW) {
  const Shape& s = x.shape();
  const int64_t H = s[2], W = s[3];
  std::vector<float> v = x.to_vector();
  std::vector<double> y;
  for (int64_t plane = 0; plane < s[0] * s[1]; ++plane)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        // floor(i * H / OH) and ceil((i + 1) * H / OH), in floating point here.
        int64_t h0 = static_cast<int64_t>(std::floor(double(oh) * H / OH));
        int64_t h1 = static_cast<int64_t>(std::ceil(double(oh + 1) * H / OH));
        int64_t w0 = static_cast<int64_t>(std::floor(double(ow) * W / OW));
        int64_t w1 = static_cast<int64_t>(std::ceil(double(ow + 1) * W / OW));
        double total = 0.0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) total += v[(plane * H + ih) * W + iw];
        y.push_back(total / double((h1 - h0) * (w1 - w0)));
      }
  return y;
}

}  // namespace

TEST_CASE("max_pool2d forward against a loop reference") {
  Generator gen(21);
  for (const PoolCase& c : kCases) {
    CAPTURE(c.name);
    // All negative: a pool that let padding (0) win would fail here.
    Tensor x = gen.uniform_tensor(c.x, -3.0f, -0.5f);
    Tensor y = max_pool2d(x, c.kernel, c.stride, c.padding);
    CHECK(y.shape() == Shape{c.x[0], c.x[1], pool_out(c.x[2], c.kernel, c.stride, c.padding),
                             pool_out(c.x[3], c.kernel, c.stride, c.padding)});
    expect_close(y, pool_reference(x, c, max_of), 0.0, 0.0, c.name);
  }
}

TEST_CASE("max_pool2d backward against finite differences") {
  Generator gen(22);
  for (const PoolCase& c : kCases) {
    CAPTURE(c.name);
    const PoolCase pc = c;
    expect_gradients([pc](auto& in) { return max_pool2d(in[0], pc.kernel, pc.stride, pc.padding); },
                     {distinct_input(c.x, gen)});
  }
}

TEST_CASE("max_pool2d sends a tied window's gradient to its first maximum") {
  Tensor x = Tensor::from_vector({1, 1, 0, 2,  //
                                  1, 1, 2, 2},
                                 {1, 1, 2, 4})
                 .set_requires_grad(true);
  sum(max_pool2d(x, 2, 2, 0)).backward();
  expect_close(x.grad(), std::vector<double>{1, 0, 0, 1, 0, 0, 0, 0});
}

TEST_CASE("avg_pool2d forward against a loop reference, count_include_pad both ways") {
  Generator gen(23);
  for (const PoolCase& c : kCases) {
    CAPTURE(c.name);
    Tensor x = gen.uniform_tensor(c.x, -1.0f, 1.0f);
    auto include = [](const std::vector<double>& v, int64_t padded) { return sum_of(v) / padded; };
    auto exclude = [](const std::vector<double>& v, int64_t) { return sum_of(v) / v.size(); };
    expect_close(avg_pool2d(x, c.kernel, c.stride, c.padding, true), pool_reference(x, c, include),
                 1e-6, 1e-5, std::string(c.name) + " include pad");
    expect_close(avg_pool2d(x, c.kernel, c.stride, c.padding, false), pool_reference(x, c, exclude),
                 1e-6, 1e-5, std::string(c.name) + " exclude pad");
  }
}

TEST_CASE("avg_pool2d backward against finite differences") {
  Generator gen(24);
  for (const PoolCase& c : kCases) {
    for (bool include_pad : {true, false}) {
      CAPTURE(c.name);
      CAPTURE(include_pad);
      const PoolCase pc = c;
      expect_gradients(
          [pc, include_pad](auto& in) {
            return avg_pool2d(in[0], pc.kernel, pc.stride, pc.padding, include_pad);
          },
          {random_input(c.x, gen)});
    }
  }
}

TEST_CASE("adaptive_avg_pool2d forward and backward") {
  struct AdaptiveCase {
    Shape x;
    int64_t oh, ow;
  };
  const AdaptiveCase cases[] = {
      {{2, 3, 5, 7}, 3, 2},   // non-divisible: overlapping bins of unequal size
      {{2, 3, 7, 7}, 1, 1},   // global average
      {{1, 2, 6, 6}, 3, 3},   // divisible
      {{1, 2, 4, 5}, 6, 7},   // larger output than input
      {{1, 1, 9, 10}, 4, 3},
  };
  Generator gen(25);
  for (const AdaptiveCase& c : cases) {
    CAPTURE(shape_str(c.x));
    CAPTURE(c.oh);
    CAPTURE(c.ow);
    Tensor x = random_input(c.x, gen);
    Tensor y = adaptive_avg_pool2d(x, c.oh, c.ow);
    CHECK(y.shape() == Shape{c.x[0], c.x[1], c.oh, c.ow});
    expect_close(y, adaptive_reference(x, c.oh, c.ow), 1e-6, 1e-5);
    const int64_t oh = c.oh, ow = c.ow;
    expect_gradients([oh, ow](auto& in) { return adaptive_avg_pool2d(in[0], oh, ow); }, {x});
  }
}

TEST_CASE("pooling rejects bad arguments with clear messages") {
  Tensor x = Tensor::zeros({1, 2, 5, 5});
  expect_invalid([&] { max_pool2d(x, 3, 1, 2); }, "padding must be in [0, kernel / 2]");
  expect_invalid([&] { avg_pool2d(Tensor::zeros({2, 5, 5}), 2, 2, 0); }, "[N, C, H, W]");
  expect_invalid([&] { max_pool2d(x, 7, 1, 0); }, "kernel larger than the padded input");
  expect_invalid([&] { avg_pool2d(x, 2, 0, 0); }, "stride must be >= 1");
  expect_invalid([&] { adaptive_avg_pool2d(x, 0, 2); }, "must be positive");
}
