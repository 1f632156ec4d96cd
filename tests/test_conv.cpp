// conv2d: forward and both backward kernels against plain loop references in
// double, gradients against finite differences, across the geometry paths
// of the CPU kernel (im2col GEMM, 1x1 without im2col, grouped, depthwise)
// and both of its threading schemes.
#include <omp.h>

#include <stdexcept>
#include <string>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

struct ConvCase {
  const char* name;
  Shape x, w;
  bool bias;
  Conv2dOptions opt;
};

Conv2dOptions options(int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                      int64_t dil_h = 1, int64_t dil_w = 1, int64_t groups = 1) {
  Conv2dOptions o;
  o.stride_h = stride_h, o.stride_w = stride_w, o.pad_h = pad_h, o.pad_w = pad_w;
  o.dil_h = dil_h, o.dil_w = dil_w, o.groups = groups;
  return o;
}

const ConvCase kCases[] = {
    {"3x3 padded, odd sizes", {2, 3, 7, 9}, {4, 3, 3, 3}, true, options(1, 1, 1, 1)},
    {"stride 2 padded", {2, 3, 9, 8}, {5, 3, 3, 3}, false, options(2, 2, 1, 1)},
    {"dilation 2, padding 2", {1, 2, 9, 10}, {3, 2, 3, 3}, true, options(1, 1, 2, 2, 2, 2)},
    {"non-square kernel, mixed stride/pad", {2, 3, 8, 11}, {4, 3, 2, 5}, true, options(1, 2, 1, 2)},
    {"stride larger than kernel", {2, 2, 8, 8}, {3, 2, 2, 2}, false, options(3, 3, 0, 0)},
    {"groups 2", {2, 4, 7, 7}, {6, 2, 3, 3}, true, options(1, 1, 1, 1, 1, 1, 2)},
    {"groups 3 stride 2", {3, 6, 6, 5}, {9, 2, 3, 3}, false, options(2, 2, 1, 1, 1, 1, 3)},
    {"depthwise 3x3", {2, 5, 8, 9}, {5, 1, 3, 3}, true, options(1, 1, 1, 1, 1, 1, 5)},
    {"depthwise stride 2 padded", {2, 4, 9, 8}, {4, 1, 3, 3}, false, options(2, 2, 1, 1, 1, 1, 4)},
    {"depthwise dilated non-square", {1, 3, 11, 10}, {3, 1, 5, 3}, true,
     options(1, 2, 2, 1, 2, 1, 3)},
    {"channel multiplier 2 (groups == C < O)", {2, 3, 6, 6}, {6, 1, 3, 3}, true,
     options(1, 1, 1, 1, 1, 1, 3)},
    {"1x1", {2, 6, 5, 7}, {4, 6, 1, 1}, true, options(1, 1, 0, 0)},
    {"1x1 stride 2", {2, 4, 7, 7}, {3, 4, 1, 1}, false, options(2, 2, 0, 0)},
    {"1x1 groups 2", {2, 4, 5, 5}, {6, 2, 1, 1}, false, options(1, 1, 0, 0, 1, 1, 2)},
    {"single sample", {1, 3, 6, 7}, {2, 3, 3, 3}, true, options(1, 1, 1, 1)},
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

// Plain loops over the definition; calls visit(y_index, x_index, w_index)
// for every (output, tap) pair that reads a real (non-padding) input.
template <class Visit>
void for_each_tap(const Shape& xs, const Shape& ws, const Conv2dOptions& o, Visit visit) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t O = ws[0], I = ws[1], KH = ws[2], KW = ws[3];
  const int64_t OH = out_size(H, KH, o.stride_h, o.pad_h, o.dil_h);
  const int64_t OW = out_size(W, KW, o.stride_w, o.pad_w, o.dil_w);
  const int64_t Og = O / o.groups;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow)
          for (int64_t i = 0; i < I; ++i)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * o.stride_h - o.pad_h + kh * o.dil_h;
                int64_t iw = ow * o.stride_w - o.pad_w + kw * o.dil_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                int64_t c = (oc / Og) * I + i;
                visit(((n * O + oc) * OH + oh) * OW + ow, ((n * C + c) * H + ih) * W + iw,
                      ((oc * I + i) * KH + kh) * KW + kw);
              }
}

Shape out_shape(const Shape& xs, const Shape& ws, const Conv2dOptions& o) {
  return {xs[0], ws[0], out_size(xs[2], ws[2], o.stride_h, o.pad_h, o.dil_h),
          out_size(xs[3], ws[3], o.stride_w, o.pad_w, o.dil_w)};
}

std::vector<double> conv_reference(const Tensor& x, const Tensor& w, const Tensor& bias,
                                   const Conv2dOptions& o) {
  Shape ys = out_shape(x.shape(), w.shape(), o);
  std::vector<float> vx = x.to_vector(), vw = w.to_vector();
  std::vector<double> y(shape_numel(ys), 0.0);
  if (bias.defined()) {
    std::vector<float> vb = bias.to_vector();
    const int64_t plane = ys[2] * ys[3];
    for (size_t i = 0; i < y.size(); ++i) y[i] = vb[(i / plane) % ys[1]];
  }
  for_each_tap(x.shape(), w.shape(), o, [&](int64_t yi, int64_t xi, int64_t wi) {
    y[yi] += static_cast<double>(vx[xi]) * vw[wi];
  });
  return y;
}

// dx and dw of sum(dy * conv(x, w)).
void conv_backward_reference(const Tensor& x, const Tensor& w, const Tensor& dy,
                             const Conv2dOptions& o, std::vector<double>& dx,
                             std::vector<double>& dw) {
  std::vector<float> vx = x.to_vector(), vw = w.to_vector(), vdy = dy.to_vector();
  dx.assign(vx.size(), 0.0);
  dw.assign(vw.size(), 0.0);
  for_each_tap(x.shape(), w.shape(), o, [&](int64_t yi, int64_t xi, int64_t wi) {
    dx[xi] += static_cast<double>(vdy[yi]) * vw[wi];
    dw[wi] += static_cast<double>(vdy[yi]) * vx[xi];
  });
}

// Runs f with the OpenMP thread count set to `threads`, restoring it after.
template <class F>
void with_threads(int threads, F f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  try {
    f();
  } catch (...) {
    omp_set_num_threads(previous);
    throw;
  }
  omp_set_num_threads(previous);
}

}  // namespace

TEST_CASE("conv2d forward against a loop reference") {
  Generator gen(11);
  for (const ConvCase& c : kCases) {
    CAPTURE(c.name);
    Tensor x = gen.uniform_tensor(c.x, -1.0f, 1.0f), w = gen.uniform_tensor(c.w, -1.0f, 1.0f);
    Tensor b = c.bias ? gen.uniform_tensor({c.w[0]}, -1.0f, 1.0f) : Tensor();
    Tensor y = conv2d(x, w, b, c.opt);
    CHECK(y.shape() == out_shape(c.x, c.w, c.opt));
    expect_close(y, conv_reference(x, w, b, c.opt), 1e-5, 1e-4, c.name);
  }
}

TEST_CASE("conv2d backward against finite differences") {
  Generator gen(12);
  for (const ConvCase& c : kCases) {
    CAPTURE(c.name);
    Tensor x = random_input(c.x, gen), w = random_input(c.w, gen);
    Tensor b = c.bias ? random_input({c.w[0]}, gen) : Tensor();
    const Conv2dOptions opt = c.opt;
    expect_gradients([opt](auto& in) { return conv2d(in[0], in[1], in[2], opt); }, {x, w, b});
  }
}

TEST_CASE("conv2d on larger shapes matches the reference with 1, 2 and 4 threads") {
  // 3 samples: with 2 threads the samples run in parallel (per-thread weight
  // gradient copies); with 4 threads they run in turn with a threaded GEMM
  // (except the grouped case: 6 jobs).
  const ConvCase cases[] = {
      {"3x3 stride 1", {3, 8, 15, 13}, {16, 8, 3, 3}, true, options(1, 1, 1, 1)},
      {"3x3 stride 2 grouped", {3, 8, 15, 13}, {12, 4, 3, 3}, true, options(2, 2, 1, 1, 1, 1, 2)},
      {"1x1", {3, 16, 9, 11}, {8, 16, 1, 1}, false, options(1, 1, 0, 0)},
      {"depthwise", {3, 16, 17, 15}, {16, 1, 3, 3}, true, options(2, 1, 1, 1, 1, 1, 16)},
      // 1152 rows of im2col and hundreds of pixels: several depth blocks of
      // the AVX-512 GEMM, and rows of 5 pixels (im2col's short-row case).
      {"3x3 stride 2 dilation 2, 128 channels", {2, 128, 41, 40}, {8, 128, 3, 3}, false,
       options(2, 2, 2, 2, 2, 2)},
      {"3x3 on rows of 5 pixels, 128 channels", {2, 128, 64, 5}, {8, 128, 3, 3}, false,
       options(1, 1, 1, 1)},
  };
  Generator gen(13);
  for (const ConvCase& c : cases) {
    CAPTURE(c.name);
    Tensor x = random_input(c.x, gen), w = random_input(c.w, gen);
    Tensor b = c.bias ? random_input({c.w[0]}, gen) : Tensor();
    Tensor dy = gen.uniform_tensor(out_shape(c.x, c.w, c.opt), -1.0f, 1.0f);
    std::vector<double> y_ref = conv_reference(x, w, b, c.opt), dx_ref, dw_ref;
    conv_backward_reference(x, w, dy, c.opt, dx_ref, dw_ref);
    for (int threads : {1, 2, 4}) {
      CAPTURE(threads);
      with_threads(threads, [&] {
        x.zero_grad();
        w.zero_grad();
        Tensor y = conv2d(x, w, b, c.opt);
        expect_close(y, y_ref, 1e-4, 1e-4, "y");
        y.backward(dy);
        expect_close(x.grad(), dx_ref, 1e-4, 1e-4, "dx");
        expect_close(w.grad(), dw_ref, 1e-3, 1e-4, "dw");
      });
    }
  }
}

TEST_CASE("conv2d computes only the gradients that are needed") {
  Generator gen(14);
  Tensor x = gen.uniform_tensor({2, 3, 5, 5}, -1.0f, 1.0f);  // no grad
  Tensor w = random_input({4, 3, 3, 3}, gen);
  Tensor b = gen.uniform_tensor({4}, -1.0f, 1.0f);  // no grad
  Tensor y = conv2d(x, w, b, options(1, 1, 1, 1));
  sum(y).backward();
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
  REQUIRE(w.grad().defined());
  CHECK(w.grad().shape() == w.shape());

  Tensor frozen = gen.uniform_tensor({4, 3, 3, 3}, -1.0f, 1.0f);
  Tensor no_grad_out = conv2d(x, frozen, Tensor(), options(1, 1, 0, 0));
  CHECK_FALSE(no_grad_out.requires_grad());
}

TEST_CASE("conv2d bias gradient sums over batch and space") {
  Tensor x = Tensor::zeros({2, 1, 4, 5});
  Tensor w = Tensor::zeros({3, 1, 3, 3});
  Tensor b = Tensor::zeros({3}).set_requires_grad(true);
  sum(conv2d(x, w, b, options(1, 1, 0, 0))).backward();  // output [2, 3, 2, 3]
  expect_close(b.grad(), std::vector<double>{12, 12, 12});
}

TEST_CASE("conv2d rejects inconsistent shapes with clear messages") {
  Tensor x = Tensor::zeros({2, 4, 5, 5});
  expect_invalid([&] { conv2d(x, Tensor::zeros({3, 3, 3, 3}), Tensor(), {}); },
                 "weight expects 3 input channels");
  expect_invalid([&] { conv2d(Tensor::zeros({4, 5, 5}), Tensor::zeros({3, 4, 3, 3}), Tensor(), {}); },
                 "input must be [N, C, H, W]");
  expect_invalid([&] { conv2d(x, Tensor::zeros({3, 2, 3, 3}), Tensor(), options(1, 1, 0, 0, 1, 1, 2)); },
                 "must divide both");
  expect_invalid([&] { conv2d(x, Tensor::zeros({3, 4, 3, 3}), Tensor::zeros({4}), {}); },
                 "bias");
  expect_invalid([&] { conv2d(x, Tensor::zeros({3, 4, 7, 3}), Tensor(), {}); },
                 "does not fit the padded input");
  expect_invalid([&] { conv2d(x, Tensor::zeros({3, 4, 3, 3}), Tensor(), options(0, 1, 0, 0)); },
                 "stride");
  expect_invalid([&] { conv2d(x, Tensor::zeros({0, 4, 3, 3}), Tensor(), {}); },
                 "at least one channel");
  expect_invalid([&] { conv2d(Tensor::zeros({2, 0, 5, 5}), Tensor::zeros({3, 0, 3, 3}), Tensor(), {}); },
                 "at least one channel");
}

