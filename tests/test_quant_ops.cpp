// Quantization ops: fake quantization and AdaRound against plain references
// of docs/METHOD.md's formulas. Rounding makes fake quantization piecewise
// constant, so its straight-through gradients are checked against their
// defining formulas; AdaRound's soft rounding and its regularizer are smooth
// in alpha and are checked against finite differences.
#include <algorithm>
#include <cmath>
#include <string>
#include <thread>

#include "engine/ops_quant.h"
#include "engine/safetensors.h"
#include "kernels/cpu/unfused_float.h"
#include "kernels/kernels.h"
#include "quant/quant_hook.h"
#include "quant/quantizer.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

struct Ref {
  double value, dx, dscale;
};

// One element of the fake quantizer and its STE gradients.
Ref fake_quant_ref(double x, double d, double z, double qmax) {
  double u = x / static_cast<float>(d);
  double r = std::nearbyint(static_cast<float>(u));
  double level = r + z;
  bool inside = level >= 0 && level <= qmax;
  double clamped = std::min(qmax, std::max(0.0, level));
  return {(clamped - z) * d, inside ? 1.0 : 0.0, inside ? r - u : clamped - z};
}

// Exact (double) mean |x - q_k(x)|^2.4 of each candidate for one channel
// [values], q_k formed in float as the kernel and the reference do (its range
// from scaled_range, whose rounding the test below pins), and the exponent
// 2.4 as a float (the reference raises float32 tensors to 2.4, which PyTorch
// converts to the tensor's type).
std::vector<double> exact_range_scores(const std::vector<float>& values, int bits) {
  const float qmax = static_cast<float>((1 << bits) - 1);
  const float mn = *std::min_element(values.begin(), values.end());
  const float mx = *std::max_element(values.begin(), values.end());
  std::vector<double> scores(80);
  for (int k = 0; k < 80; ++k) {
    const cpu::ScaledRange range = cpu::scaled_range(mn, mx, cpu::range_shrink(k), qmax);
    const float d = range.step, z = std::nearbyint(-range.min / d);
    double s = 0.0;
    for (float v : values) {
      const float xq = static_cast<float>(fake_quant_ref(v, d, z, qmax).value);
      s += std::pow(std::fabs(v - xq), static_cast<double>(2.4f));
    }
    scores[k] = s / static_cast<double>(values.size());
  }
  return scores;
}

int64_t argmin(const std::vector<double>& v, size_t begin = 0, size_t n = 80) {
  return std::min_element(v.begin() + begin, v.begin() + begin + n) - (v.begin() + begin);
}

}  // namespace

TEST_CASE("fake_quantize per tensor and per channel against the formula") {
  Generator gen(11);
  for (bool per_channel : {false, true}) {
    for (int bits : {2, 3, 4, 8}) {
      CAPTURE(per_channel);
      CAPTURE(bits);
      // NCHW activations quantized along axis 1 (or per tensor).
      Tensor x = random_input({3, 4, 5, 2}, gen, -2.0f, 3.0f);
      int64_t C = per_channel ? 4 : 1;
      std::vector<float> d(C), z(C);
      for (int64_t c = 0; c < C; ++c) {
        d[c] = gen.uniform(0.05f, 0.4f);
        z[c] = std::nearbyint(gen.uniform(0.0f, float((1 << bits) - 1)));
      }
      Tensor scale = Tensor::from_vector(d, {C}).set_requires_grad(true);
      Tensor zp = Tensor::from_vector(z, {C});
      Tensor w = gen.uniform_tensor(x.shape(), -1.0f, 1.0f);
      Tensor y = fake_quantize(x, scale, zp, 1, bits);
      y.backward(w);
      std::vector<float> xv = x.to_vector(), wv = w.to_vector();
      std::vector<double> ref(xv.size()), dx(xv.size()), ds(C, 0.0);
      double qmax = (1 << bits) - 1;
      for (size_t i = 0; i < xv.size(); ++i) {
        int64_t c = per_channel ? (i / 10) % 4 : 0;
        Ref r = fake_quant_ref(xv[i], d[c], z[c], qmax);
        ref[i] = r.value;
        dx[i] = wv[i] * r.dx;
        ds[c] += wv[i] * r.dscale;
      }
      expect_close(y, ref, 1e-6, 1e-6, "fake quant value");
      expect_close(x.grad(), dx, 1e-6, 1e-6, "fake quant dx");
      expect_close(scale.grad(), ds, 1e-4, 1e-4, "fake quant dscale");
    }
  }
}

TEST_CASE("fake_quantize rounds half to even and saturates at the grid ends") {
  Tensor x = Tensor::from_vector({0.5f, 1.5f, 2.5f, -0.5f, 100.0f, -100.0f}, {6});
  Tensor scale = Tensor::from_vector({1.0f}, {1}), zp = Tensor::from_vector({2.0f}, {1});
  // levels 0..7 with z = 2: representable values -2 .. 5
  expect_close(fake_quantize(x, scale, zp, 0, 3), std::vector<double>{0, 2, 2, -0.0, 5, -2});
}

TEST_CASE("fake_quantize on token tensors along the last axis") {
  Generator gen(12);
  Tensor x = gen.uniform_tensor({2, 3, 5}, -1.0f, 1.0f);
  std::vector<float> d = {0.1f, 0.2f, 0.05f, 0.3f, 0.15f}, z = {3, 4, 5, 6, 7};
  Tensor y = fake_quantize(x, Tensor::from_vector(d, {5}), Tensor::from_vector(z, {5}), -1, 4);
  std::vector<float> xv = x.to_vector();
  std::vector<double> ref(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) ref[i] = fake_quant_ref(xv[i], d[i % 5], z[i % 5], 15).value;
  expect_close(y, ref, 1e-6, 1e-6);
}

TEST_CASE("adaround soft and hard forward against the formula") {
  Generator gen(13);
  Tensor w = gen.uniform_tensor({4, 3, 2, 2}, -1.0f, 1.0f);
  std::vector<float> d = {0.1f, 0.2f, 0.15f, 0.25f}, z = {7, 6, 8, 7};
  Tensor scale = Tensor::from_vector(d, {4}), zp = Tensor::from_vector(z, {4});
  Tensor alpha = gen.uniform_tensor(w.shape(), -4.0f, 4.0f);
  std::vector<float> wv = w.to_vector(), av = alpha.to_vector();
  std::vector<double> soft(wv.size()), hard(wv.size());
  for (size_t i = 0; i < wv.size(); ++i) {
    size_t c = i / 12;
    double s = 1 / (1 + std::exp(-double(av[i])));
    double h = std::min(1.0, std::max(0.0, s * 1.2 - 0.1));
    double fl = std::floor(wv[i] / d[c]);
    auto q = [&](double hh) { return (std::min(15.0, std::max(0.0, fl + hh + z[c])) - z[c]) * d[c]; };
    soft[i] = q(h);
    hard[i] = q(av[i] >= 0 ? 1.0 : 0.0);
  }
  expect_close(adaround_quantize(w, alpha, scale, zp, 4, false), soft, 1e-5, 1e-5, "soft");
  expect_close(adaround_quantize(w, alpha, scale, zp, 4, true), hard, 1e-6, 1e-6, "hard");
}

TEST_CASE("adaround gradient to alpha against finite differences") {
  Generator gen(14);
  Tensor w = gen.uniform_tensor({3, 5}, -0.5f, 0.5f);
  Tensor scale = Tensor::from_vector({0.1f, 0.07f, 0.12f}, {3});
  Tensor zp = Tensor::from_vector({7, 8, 6}, {3});
  // alphas away from the rectified sigmoid's flat ends (|alpha| < ~2.3)
  Tensor alpha = random_input({3, 5}, gen, -1.5f, 1.5f);
  expect_gradients([&](auto& in) { return adaround_quantize(w, in[0], scale, zp, 4, false); },
                   {alpha}, {1e-3, 1e-4, 1e-2});
}

TEST_CASE("adaround init puts h(alpha) on the fractional part") {
  Generator gen(15);
  Tensor w = gen.uniform_tensor({3, 4}, -1.0f, 1.0f);
  Tensor scale = Tensor::from_vector({0.1f, 0.3f, 0.07f}, {3});
  Tensor zp = Tensor::from_vector({16, 16, 16}, {3});
  Tensor alpha = adaround_init_alpha(w, scale);
  // With h = r the soft quantizer reproduces W exactly (5 bits: all inside the grid).
  expect_close(adaround_quantize(w, alpha, scale, zp, 5, false), w, 1e-5, 1e-4);
}

TEST_CASE("rounding regularizer value and gradient") {
  Generator gen(16);
  Tensor alpha = random_input({4, 6}, gen, -2.0f, 2.0f);
  std::vector<float> av = alpha.to_vector();
  for (float beta : {20.0f, 2.0f, 7.5f}) {
    CAPTURE(beta);
    double ref = 0;
    std::vector<double> grad(av.size());
    for (size_t i = 0; i < av.size(); ++i) {
      double s = 1 / (1 + std::exp(-double(av[i])));
      double h = std::min(1.0, std::max(0.0, s * 1.2 - 0.1));
      double t = 2 * h - 1;
      ref += 1 - std::pow(std::fabs(t), beta);
      bool inside = s * 1.2 - 0.1 > 0 && s * 1.2 - 0.1 < 1;
      grad[i] = inside ? -0.01 * beta * std::pow(std::fabs(t), beta - 1) * (t > 0 ? 1 : -1) * 2 *
                             1.2 * s * (1 - s)
                       : 0.0;
    }
    Tensor a = alpha.detach().set_requires_grad(true);
    Tensor loss = adaround_round_loss(a, beta, 0.01f);
    CHECK(loss.item() == doctest::Approx(0.01 * ref).epsilon(1e-5));
    loss.backward();
    expect_close(a.grad(), grad, 1e-7, 1e-4, "regularizer gradient formula");
    // Finite differences where the curvature allows a usable step, away from
    // the flat ends of h; weight 1 keeps the objective large against float32 noise.
    if (beta < 10.0f) {
      Tensor inner = random_input({2, 3}, gen, -1.5f, 1.5f);  // few terms: small objective
      expect_gradients([beta](auto& in) { return adaround_round_loss(in[0], beta, 1.0f); },
                       {inner}, {3e-3, 2e-4, 1e-2});
    }
  }
}

TEST_CASE("channel range and MSE candidate scores against a reference") {
  Generator gen(17);
  Tensor x = gen.uniform_tensor({5, 3, 7}, -2.0f, 1.0f);  // channels along axis 1
  ChannelRange r = channel_range(x, 1, true);
  std::vector<float> xv = x.to_vector();
  for (int c = 0; c < 3; ++c) {
    float mn = INFINITY, mx = -INFINITY;
    for (int o = 0; o < 5; ++o)
      for (int i = 0; i < 7; ++i) {
        mn = std::min(mn, xv[(o * 3 + c) * 7 + i]);
        mx = std::max(mx, xv[(o * 3 + c) * 7 + i]);
      }
    CHECK(r.min[c] == mn);
    CHECK(r.max[c] == mx);
  }
  std::vector<double> scores = quant_range_scores(x, 1, true, r, 80, 3, 2.4f);
  for (int c = 0; c < 3; ++c)
    for (int k : {0, 13, 79}) {
      const cpu::ScaledRange range =
          cpu::scaled_range(r.min[c], r.max[c], cpu::range_shrink(k), 7.0f);
      const float d = range.step, z = std::nearbyint(-range.min / d);
      double s = 0;
      for (int o = 0; o < 5; ++o)
        for (int i = 0; i < 7; ++i) {
          float v = xv[(o * 3 + c) * 7 + i];
          s += std::pow(std::fabs(v - fake_quant_ref(v, d, z, 7).value), 2.4);
        }
      CHECK(scores[c * 80 + k] == doctest::Approx(s / 35).epsilon(1e-4));
    }
  ChannelRange all = channel_range(x, 1, false);
  CHECK(all.min.size() == 1);
  CHECK(all.min[0] == *std::min_element(xv.begin(), xv.end()));
}

// Neighbouring candidates of the MSE search can score the same to a few
// 1e-7 (relative), below the rounding error of float powers; the search must
// still rank them as exact arithmetic does, as the reference's does.
TEST_CASE("MSE search ranks near-tied candidates as exact arithmetic does") {
  SUBCASE("random channels: the candidates near the best are exact") {
    Generator gen(23);
    Tensor x = gen.normal_tensor({64, 300}, 0.0f, 1.0f);  // 64 channels along axis 0
    ChannelRange r = channel_range(x, 0, true);
    std::vector<double> scores = quant_range_scores(x, 0, true, r, 80, 4, 2.4f);
    std::vector<float> xv = x.to_vector();
    for (int c = 0; c < 64; ++c) {
      CAPTURE(c);
      std::vector<double> exact =
          exact_range_scores(std::vector<float>(xv.begin() + c * 300, xv.begin() + (c + 1) * 300), 4);
      const int64_t best = argmin(exact);
      CHECK(argmin(scores, c * 80) == best);
      for (int k = 0; k < 80; ++k) {
        const double rel = std::fabs(scores[c * 80 + k] - exact[k]) / exact[best];
        CHECK(rel < (exact[k] <= exact[best] * 1.00005 ? 1e-12 : 1e-4));
      }
    }
  }
  SUBCASE("deit_t32 blocks.1.mlp.fc1 output channel 295 at 4 bits: 6 and 7 within 3e-7") {
    const std::string path = std::string(PACKPTQ_FIXTURES_DIR) + "/models/deit_t32/model.safetensors";
    const Tensor w = load_safetensors(path).at("blocks.1.mlp.fc1.weight");
    REQUIRE(w.dim() == 2);
    const int64_t in = w.size(1);
    std::vector<float> all = w.to_vector();
    std::vector<float> row(all.begin() + 295 * in, all.begin() + 296 * in);
    const std::vector<double> exact = exact_range_scores(row, 4);
    REQUIRE(argmin(exact) == 7);
    CHECK(std::fabs(exact[6] - exact[7]) < 3e-7 * exact[7]);  // the near tie this guards

    Tensor channel = Tensor::from_vector(row, {1, in});
    std::vector<double> scores = quant_range_scores(channel, 0, true, channel_range(channel, 0, true), 80, 4, 2.4f);
    CHECK(argmin(scores) == 7);
    UniformQuantizer q(4, true, 0);
    q.init(channel, InitMethod::Mse);
    const float mn = *std::min_element(row.begin(), row.end());
    const float mx = *std::max_element(row.begin(), row.end());
    CHECK(q.scale.item() == cpu::scaled_range(mn, mx, 0.93f, 15.0f).step);
  }
}

// The range search's arithmetic must round every float product before the
// subtraction that follows it, as the reference's separate float32 ops do;
// a build that fuses them into multiply-adds fails here. The inputs are ones
// where a fused product gives another float. The expected values emulate
// each float op in double, rounded to float: exact (a float product fits in
// a double; rounding a double difference to float rounds it once), and with
// no float multiply-add for the compiler to form.
TEST_CASE("range and quantization error arithmetic rounds each product, never fused") {
  auto mul = [](float a, float b) { return static_cast<float>(double{a} * double{b}); };
  auto sub = [](float a, float b) { return static_cast<float>(double{a} - double{b}); };

  SUBCASE("a candidate's range and step: (hi * shrink - lo * shrink) / qmax") {
    const float lo = -0x1.729b9cp-1f, hi = 0x1.5b232p+0f, shrink = cpu::range_shrink(7);
    REQUIRE(shrink == 0.93f);
    const float mn = mul(lo, shrink), mx = mul(hi, shrink);
    const float step = sub(mx, mn) / 15.0f;
    // Either product fused into the subtraction moves the step.
    REQUIRE(std::fma(hi, shrink, -mn) / 15.0f != step);
    REQUIRE(std::fma(-lo, shrink, mx) / 15.0f != step);

    const cpu::ScaledRange range = cpu::scaled_range(lo, hi, shrink, 15.0f);
    CHECK(range.min == mn);
    CHECK(range.step == step);
  }
  SUBCASE("quantization errors: x - (level - z) * step") {
    // Every value on the grid as the fake quantizer outputs it, the product
    // rounded to float: each error is 0. Fused, an error is the product's
    // rounding instead, nonzero wherever the product is inexact.
    const float step = 0.1f, z = 8.0f;
    std::vector<float> x;
    double fused_sum = 0.0;
    for (int repeat = 0; repeat < 3; ++repeat)  // full vector lanes and a tail
      for (int level = 0; level <= 15; ++level) {
        x.push_back(mul(static_cast<float>(level) - z, step));
        const float fused_error = std::fma(z - static_cast<float>(level), step, x.back());
        fused_sum += std::pow(std::fabs(static_cast<double>(fused_error)), 2.4);
      }
    REQUIRE(fused_sum > 0.0);

    const auto n = static_cast<int64_t>(x.size());
    // A zero error adds only the underflowed power of the smallest normal.
    CHECK(cpu::quant_error_power_sum<float>(x.data(), n, step, z, 15.0f, 2.4f) < 1e-6 * fused_sum);
    CHECK(cpu::quant_error_power_sum<double>(x.data(), n, step, z, 15.0f, 2.4f) < 1e-6 * fused_sum);
  }
}

TEST_CASE("a quantizer hook transforms what its mode says and captures in any mode") {
  Generator gen(3);
  const Linear layer(4, 3);
  QuantHook hook(layer, QuantSettings{}, /*has_input_quantizer=*/true);
  const Tensor x = gen.uniform_tensor({2, 4}, -1.0f, 1.0f);
  const Tensor w = gen.uniform_tensor({3, 4}, -1.0f, 1.0f);
  CHECK(hook.mode() == QuantMode::Float);
  CHECK(hook.operand(0, x).to_vector() == x.to_vector());
  CHECK(hook.weight(w).to_vector() == w.to_vector());

  hook.begin_initialization();
  const Tensor xq = hook.operand(0, x), wq = hook.weight(w);
  CHECK(hook.operand_quantizers[0]->initialized());
  CHECK(hook.weight_quantizer->initialized());
  CHECK(xq.to_vector() != x.to_vector());
  CHECK(wq.to_vector() != w.to_vector());
  hook.end_initialization();
  CHECK(hook.mode() == QuantMode::Quantized);
  expect_invalid([&] { hook.end_initialization(); }, "without begin_initialization");

  hook.set_quant(/*weights=*/true, /*activations=*/false);
  CHECK(hook.mode() == QuantMode::Weights);
  CHECK(hook.weight(w).to_vector() == wq.to_vector());
  CHECK(hook.operand(0, x).to_vector() == x.to_vector());
  hook.set_quant(/*weights=*/false, /*activations=*/true);
  CHECK(hook.mode() == QuantMode::Activations);
  CHECK(hook.weight(w).to_vector() == w.to_vector());
  CHECK(hook.operand(0, x).to_vector() == xq.to_vector());

  // Operand 0 as it arrives, before quantization, quantized mode or float.
  hook.start_capture();
  hook.operand(0, x);
  hook.set_quant(false, false);
  hook.operand(0, xq);
  const std::vector<Tensor> seen = hook.finish_capture();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].to_vector() == x.to_vector());
  CHECK(seen[1].to_vector() == xq.to_vector());
  hook.operand(0, x);
  CHECK(hook.finish_capture().empty());
}

TEST_CASE("a hook hands the thread bound to a shard that shard's copies") {
  Generator gen(4);
  const Linear layer(4, 3);
  QuantHook hook(layer, QuantSettings{}, /*has_input_quantizer=*/true);
  const Tensor x = gen.uniform_tensor({2, 4}, -1.0f, 1.0f);
  const Tensor w = gen.uniform_tensor({3, 4}, -1.0f, 1.0f);
  hook.begin_initialization();
  const Tensor xq = hook.operand(0, x), wq = hook.weight(w);
  hook.end_initialization();

  ShardThreads threads(2);
  std::vector<ShardCopies> copies(2);
  for (int s = 0; s < 2; ++s) {
    copies[s].weight = Tensor::full({3, 4}, static_cast<float>(s + 1));
    copies[s].operand_scales = {Tensor::full({1}, 0.25f * static_cast<float>(s + 1))};
  }
  hook.install_shard_copies(threads, copies);
  // A thread bound to no shard gets the hook's own.
  CHECK(hook.weight(w).to_vector() == wq.to_vector());
  CHECK(hook.operand(0, x).to_vector() == xq.to_vector());
  std::vector<float> weight_of_shard1, operand_of_shard1;
  std::thread shard1([&] {
    const ShardThreads::Binding binding(threads, 1);
    weight_of_shard1 = hook.weight(w).to_vector();
    operand_of_shard1 = hook.operand(0, x).to_vector();
  });
  shard1.join();
  CHECK(weight_of_shard1 == copies[1].weight.to_vector());
  CHECK(operand_of_shard1 ==
        hook.operand_quantizers[0]->forward(x, copies[1].operand_scales[0]).to_vector());
  {
    const ShardThreads::Binding binding(threads, 0);
    CHECK(hook.weight(w).to_vector() == copies[0].weight.to_vector());
  }
  hook.remove_shard_copies();
  const ShardThreads::Binding binding(threads, 1);
  CHECK(hook.weight(w).to_vector() == wq.to_vector());
}

// The element-wise kernels of every instruction set against the baseline's:
// the same formulas, with exp, log and the order of sums differing in the
// last bits only. Channel spans of 1 to 37 elements reach every tail of a
// 16-float vector; alphas up to +-8 reach both clamped ends of h.
TEST_CASE(
    "each instruction set's AdaRound, fake quant, Adam and MSE kernels agree with the baseline") {
  const std::string in_use = cpu_isa();
  struct Outputs {
    std::vector<float> soft, hard, dalpha, reg_grad, fq, fq_dx, param, m, v;
    float reg_value = 0.0f;
    std::vector<float> fq_dscale;
    std::vector<double> scores;
  };
  Generator gen(21);
  for (int64_t inner : {1, 7, 16, 17, 37}) {
    CAPTURE(inner);
    const AxisGeom g{2, 3, inner};
    const int64_t n = g.outer * g.dim * g.inner;
    const std::vector<float> w = gen.uniform_tensor({n}, -1.0f, 1.0f).to_vector();
    const std::vector<float> alpha = gen.uniform_tensor({n}, -8.0f, 8.0f).to_vector();
    const std::vector<float> dy = gen.uniform_tensor({n}, -1.0f, 1.0f).to_vector();
    const std::vector<float> scale = {0.1f, 0.05f, 0.3f}, zero = {7.0f, 8.0f, 2.0f};
    const std::vector<float> lo = {-0.9f, -1.0f, -0.2f}, hi = {0.8f, 0.5f, 1.0f};
    auto run = [&](const std::string& isa) {
      set_cpu_isa(isa);
      Outputs o;
      o.soft.resize(n), o.hard.resize(n), o.dalpha.resize(n), o.reg_grad.resize(n);
      o.fq.resize(n), o.fq_dx.resize(n), o.fq_dscale.resize(3), o.scores.resize(3 * 20);
      cpu::adaround_forward(g, w.data(), alpha.data(), scale.data(), zero.data(), 15.0f, false,
                            o.soft.data());
      cpu::adaround_forward(g, w.data(), alpha.data(), scale.data(), zero.data(), 15.0f, true,
                            o.hard.data());
      cpu::adaround_backward(g, w.data(), alpha.data(), scale.data(), zero.data(), 15.0f, dy.data(),
                             o.dalpha.data());
      cpu::adaround_regularizer(n, alpha.data(), 7.5f, 0.01f, &o.reg_value, o.reg_grad.data());
      cpu::fake_quant_forward(g, w.data(), scale.data(), zero.data(), 15.0f, o.fq.data());
      cpu::fake_quant_backward(g, w.data(), scale.data(), zero.data(), 15.0f, dy.data(),
                               o.fq_dx.data(), o.fq_dscale.data());
      cpu::quant_range_scores(g, w.data(), lo.data(), hi.data(), 20, 15.0f, 2.4f, o.scores.data());
      o.param = w, o.m = dy, o.v = std::vector<float>(n, 0.01f);
      for (int64_t step = 1; step <= 3; ++step)
        cpu::adam_update(n, o.param.data(), dy.data(), o.m.data(), o.v.data(), 1e-2f, 0.9f, 0.999f,
                         1e-8f, 1e-4f, step);
      return o;
    };
    const Outputs base = run(cpu_isas().front());
    for (const std::string& isa : cpu_isas()) {
      CAPTURE(isa);
      const Outputs o = run(isa);
      auto same = [](const std::vector<float>& a, const std::vector<float>& b, double atol,
                     const char* what) {
        expect_close(a, std::vector<double>(b.begin(), b.end()), atol, 1e-5, what);
      };
      same(o.soft, base.soft, 1e-6, "soft adaround");
      same(o.hard, base.hard, 0.0, "hard adaround");
      same(o.dalpha, base.dalpha, 1e-7, "adaround dalpha");
      same(o.reg_grad, base.reg_grad, 1e-8, "regularizer gradient");
      CHECK(o.reg_value == doctest::Approx(base.reg_value).epsilon(1e-6));
      same(o.fq, base.fq, 0.0, "fake quant");
      same(o.fq_dx, base.fq_dx, 0.0, "fake quant dx");
      same(o.fq_dscale, base.fq_dscale, 1e-6, "fake quant dscale");
      same(o.param, base.param, 1e-7, "adam parameters");
      same(o.m, base.m, 0.0, "adam first moments");
      same(o.v, base.v, 1e-9, "adam second moments");
      for (size_t k = 0; k < o.scores.size(); ++k)
        CHECK(o.scores[k] == doctest::Approx(base.scores[k]).epsilon(1e-5));
    }
  }
  set_cpu_isa(in_use);
}
