// Every kernel family on every backend: the CUDA backend against the CPU
// backend (itself tested against plain loops in the other test files) on
// the same random inputs, forward and backward. Each op runs on copies of
// the inputs on both devices; the outputs, the gradients of the inputs that
// require grad (for a fixed random upstream gradient) and the inputs after
// the op (in-place updates: batch norm buffers, optimizer steps) must agree
// up to a normalized error: max |cuda - cpu| / max |cpu|.
//
// Without a CUDA device (or a build without the CUDA backend) each CUDA case
// prints "skipped: no CUDA device" and returns; tests/CMakeLists.txt makes
// CTest report those cases as skipped.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>

#include "engine/ops_quant.h"
#include "engine/optim.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

bool skip_without_cuda() {
  if (device_available(Device::CUDA)) return false;
  std::cout << "skipped: no CUDA device" << std::endl;
  return true;
}

// Normalized error of `actual` against `expected`; NaN and infinities must
// sit at the same places.
template <typename T>
void expect_matches(const std::vector<T>& actual, const std::vector<T>& expected, double tol,
                    const std::string& what) {
  REQUIRE_MESSAGE(actual.size() == expected.size(),
                  what << ": " << actual.size() << " values vs " << expected.size());
  double scale = 0.0, worst = 0.0;
  size_t worst_i = 0, mismatched_specials = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] == expected[i]) {
      if (std::isfinite(expected[i])) scale = std::max(scale, std::fabs(double(expected[i])));
      continue;
    }
    if (!std::isfinite(actual[i]) || !std::isfinite(expected[i])) {
      if (!(std::isnan(actual[i]) && std::isnan(expected[i]))) ++mismatched_specials;
      continue;
    }
    scale = std::max(scale, std::fabs(double(expected[i])));
    const double err = std::fabs(double(actual[i]) - double(expected[i]));
    if (err > worst) {
      worst = err;
      worst_i = i;
    }
  }
  const double normalized = worst == 0.0 ? 0.0 : worst / std::max(scale, 1e-30);
  CHECK_MESSAGE(mismatched_specials == 0, what << ": " << mismatched_specials
                                               << " NaN/inf values differ between the devices");
  CHECK_MESSAGE(normalized <= tol, what << ": normalized error " << normalized << " (limit " << tol
                                        << ") at element " << worst_i << ": cuda "
                                        << actual[worst_i] << ", cpu " << expected[worst_i]);
}

// What one device computed, copied to the host.
struct Run {
  std::vector<float> output;
  std::vector<std::vector<float>> grads;         // of the inputs that require grad, in order
  std::vector<std::vector<float>> inputs_after;  // float inputs after the op
};

Run run_on(Device device, const Op& op, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> copies;
  for (const Tensor& t : inputs) {
    if (!t.defined()) {
      copies.push_back(t);
      continue;
    }
    Tensor copy = t.clone().to(device);  // own storage: in-place updates stay local
    if (t.requires_grad()) copy.set_requires_grad(true);
    copies.push_back(copy);
  }
  Tensor out = op(copies);
  Run run;
  run.output = out.to_vector();
  if (out.requires_grad()) {
    Generator gen(99);
    out.backward(gen.uniform_tensor(out.shape(), -1.0f, 1.0f).to(device));
    for (const Tensor& c : copies) {
      if (!c.defined() || !c.requires_grad()) continue;
      REQUIRE_MESSAGE(c.grad().defined(), "an input requiring grad received none on "
                                              << device_name(device));
      run.grads.push_back(c.grad().to_vector());
    }
  }
  for (const Tensor& c : copies)
    if (c.defined() && c.dtype() == DType::F32) run.inputs_after.push_back(c.to_vector());
  return run;
}

// Runs op on both devices and compares everything it produced.
void expect_same_on_cuda(const std::string& what, const Op& op, const std::vector<Tensor>& inputs,
                         double tol = 1e-5) {
  INFO(what);
  const Run cpu = run_on(Device::CPU, op, inputs);
  const Run gpu = run_on(Device::CUDA, op, inputs);
  expect_matches(gpu.output, cpu.output, tol, what + ": forward");
  REQUIRE(gpu.grads.size() == cpu.grads.size());
  for (size_t k = 0; k < cpu.grads.size(); ++k)
    expect_matches(gpu.grads[k], cpu.grads[k], tol, what + ": gradient " + std::to_string(k));
  REQUIRE(gpu.inputs_after.size() == cpu.inputs_after.size());
  for (size_t k = 0; k < cpu.inputs_after.size(); ++k)
    expect_matches(gpu.inputs_after[k], cpu.inputs_after[k], tol,
                   what + ": input " + std::to_string(k) + " after the op");
}

Tensor input(Generator& gen, const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
  return random_input(shape, gen, lo, hi);
}

Tensor constant(Generator& gen, const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
  return gen.uniform_tensor(shape, lo, hi);
}

// Values on a coarse grid: many exact ties (max pooling) and exact halves
// of a quantization step (round half to even).
Tensor grid_values(Generator& gen, const Shape& shape, float step, int levels) {
  std::vector<float> v(shape_numel(shape));
  for (float& x : v) x = step * std::floor(gen.uniform(0.0f, float(levels)) - levels / 2.0f);
  return Tensor::from_vector(v, shape).set_requires_grad(true);
}

}  // namespace

TEST_CASE("the cuda device is either usable or reported unavailable") {
  if (device_available(Device::CUDA)) {
    CHECK_NOTHROW(backend(Device::CUDA));
  } else {
    CHECK_THROWS_AS(backend(Device::CUDA), std::runtime_error);
  }
}

TEST_CASE("cpu memory: aligned blocks, large blocks reused, impossible sizes refused") {
  const Backend& be = backend(Device::CPU);
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{100}, size_t{4000}, size_t{3} << 20}) {
    void* p = be.alloc(bytes);
    CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
    std::memset(p, 0x5a, bytes);  // the whole request is writable
    be.release(p);
  }
  // A released block of 1 MiB or more serves the next request of its size
  // (2 MiB granules); blocks alive at the same time are distinct.
  void* first = be.alloc(size_t{5} << 20);
  be.release(first);
  void* again = be.alloc((size_t{5} << 20) + 12345);
  CHECK(again == first);
  void* other = be.alloc(size_t{5} << 20);
  CHECK(other != again);
  be.release(again);
  be.release(other);
  // Refused before any system call (and before the size rounding overflows).
  CHECK_THROWS_AS(be.alloc(SIZE_MAX - 10), std::bad_alloc);
}

TEST_CASE("cuda memory: copies, fill, overlapping device copies, caching, errors") {
  if (skip_without_cuda()) return;
  const Backend& be = backend(Device::CUDA);
  Generator gen(1);
  Tensor host = constant(gen, {1000, 3});
  Tensor dev = host.to(Device::CUDA);
  CHECK(dev.to_vector() == host.to_vector());
  CHECK(dev.clone().to_vector() == host.to_vector());
  CHECK(Tensor::full({5, 7}, 2.5f, Device::CUDA).to_vector() == std::vector<float>(35, 2.5f));
  std::vector<int64_t> ids = {4, -3, 1LL << 40};
  CHECK(Tensor::from_int64(ids, {3}, Device::CUDA).to_int64_vector() == ids);

  // Overlapping ranges copy like memmove.
  Tensor ramp = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {10}, Device::CUDA);
  be.copy_on_device(ramp.data() + 2, ramp.data(), 6 * sizeof(float));
  CHECK(ramp.to_vector() == std::vector<float>{0, 1, 0, 1, 2, 3, 4, 5, 8, 9});

  // A released block serves the next request of its size.
  void* first = be.alloc(4000);
  be.release(first);
  void* second = be.alloc(4000);
  CHECK(second == first);
  be.release(second);

  // Errors name the failing CUDA call.
  std::string message;
  try {
    be.alloc(size_t{1} << 52);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  CHECK_MESSAGE(message.find("cudaMalloc") != std::string::npos, "message: " << message);
}

TEST_CASE("cuda unary ops match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(2);
  const Shape shape = {7, 33};
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    float lo, hi;
  };
  const Case cases[] = {
      {"neg", [](const Tensor& x) { return neg(x); }, -2, 2},
      {"exp", [](const Tensor& x) { return exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return log(x); }, 0.1f, 4},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.1f, 4},
      {"pow", [](const Tensor& x) { return pow(x, 2.5f); }, 0.1f, 3},
      {"pow 0", [](const Tensor& x) { return pow(x, 0.0f); }, 0.1f, 3},
      {"add scalar", [](const Tensor& x) { return add(x, 0.75f); }, -2, 2},
      {"mul scalar", [](const Tensor& x) { return mul(x, -1.5f); }, -2, 2},
      {"relu", [](const Tensor& x) { return relu(x); }, -2, 2},
      {"relu6", [](const Tensor& x) { return relu6(x); }, -3, 9},
      {"gelu", [](const Tensor& x) { return gelu(x); }, -4, 4},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -6, 6},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5f, 0.8f); }, -2, 2},
      {"round_ste", [](const Tensor& x) { return round_ste(x); }, -5, 5},
      {"floor_ste", [](const Tensor& x) { return floor_ste(x); }, -5, 5},
      {"abs", [](const Tensor& x) { return abs(x); }, -2, 2},
  };
  for (const Case& c : cases)
    expect_same_on_cuda(c.name, [&](auto& in) { return c.f(in[0]); },
                        {input(gen, shape, c.lo, c.hi)});
  // Exact halves round to even on both devices.
  expect_same_on_cuda("round_ste halves", [](auto& in) { return round_ste(in[0]); },
                      {grid_values(gen, {64}, 0.5f, 20)}, 0.0);
  // More elements than one grid covers: the grid-stride loops wrap.
  expect_same_on_cuda("relu large", [](auto& in) { return relu(in[0]); },
                      {input(gen, {(1 << 21) + 77})});
}

TEST_CASE("cuda binary broadcasting ops and where match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(3);
  const std::pair<Shape, Shape> cases[] = {
      {{3, 4}, {3, 4}}, {{2, 3, 5}, {}},      {{2, 3, 5}, {5}}, {{2, 3, 4, 5}, {3, 1, 1}},
      {{1, 3, 1}, {2, 1, 7}}, {{4, 1}, {1, 5}}, {{}, {}},       {{300, 70}, {70}},
  };
  for (const auto& [sa, sb] : cases) {
    const std::string shapes = shape_str(sa) + " with " + shape_str(sb);
    std::vector<Tensor> in = {input(gen, sa, 0.5f, 2.0f), input(gen, sb, 0.5f, 2.0f)};
    expect_same_on_cuda("add " + shapes, [](auto& v) { return add(v[0], v[1]); }, in);
    expect_same_on_cuda("sub " + shapes, [](auto& v) { return sub(v[0], v[1]); }, in);
    expect_same_on_cuda("mul " + shapes, [](auto& v) { return mul(v[0], v[1]); }, in);
    expect_same_on_cuda("div " + shapes, [](auto& v) { return div(v[0], v[1]); }, in);
  }
  Tensor mask = Tensor::from_vector({1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1}, {3, 4});
  expect_same_on_cuda("where", [](auto& v) { return where(v[0], v[1], v[2]); },
                      {mask, input(gen, {3, 4}), input(gen, {3, 4})}, 0.0);
}

TEST_CASE("cuda reductions match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(4);
  expect_same_on_cuda("sum all (block per output, splits)", [](auto& in) { return sum(in[0]); },
                      {input(gen, {1000, 1037})});
  expect_same_on_cuda("sum dim 0 (thread per output, splits)",
                      [](auto& in) { return sum(in[0], {0}); }, {input(gen, {5000, 7})});
  expect_same_on_cuda("sum last dims keepdim", [](auto& in) { return sum(in[0], {1, 2}, true); },
                      {input(gen, {3, 64, 65})});
  expect_same_on_cuda("sum over a bias gradient's dims",
                      [](auto& in) { return sum(in[0], {0, 2, 3}); }, {input(gen, {4, 16, 9, 9})});
  expect_same_on_cuda("sum short last dim", [](auto& in) { return sum(in[0], {-1}); },
                      {input(gen, {33, 5})});
  expect_same_on_cuda("mean middle dim", [](auto& in) { return mean(in[0], {1}); },
                      {input(gen, {6, 300, 5})});
  expect_same_on_cuda("sum of a scalar", [](auto& in) { return sum(in[0]); }, {input(gen, {})});
  expect_same_on_cuda("sum_to", [](auto& in) { return sum_to(in[0], {3, 1, 5}); },
                      {input(gen, {2, 3, 4, 5})});
  expect_same_on_cuda("broadcast_to", [](auto& in) { return broadcast_to(in[0], {4, 3, 6, 5}); },
                      {input(gen, {3, 1, 5})});
}

TEST_CASE("cuda gemm kernel matches the cpu for every transpose, alpha, beta and batch") {
  if (skip_without_cuda()) return;
  Generator gen(5);
  const int64_t M = 37, N = 29, K = 53;
  for (int64_t batch : {1, 3})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.0f, 0.5f})
          for (int64_t k : {K, int64_t{0}}) {
            CAPTURE(batch);
            CAPTURE(ta);
            CAPTURE(tb);
            CAPTURE(beta);
            CAPTURE(k);
            Tensor A = constant(gen, {batch, M * K}), B = constant(gen, {batch, K * N});
            Tensor C = constant(gen, {batch, M * N});
            std::vector<float> results[2];
            for (Device device : {Device::CPU, Device::CUDA}) {
              Tensor a = A.to(device), b = B.to(device), c = C.clone().to(device);
              backend(device).gemm(ta, tb, M, N, k, 0.7f, a.data(), b.data(), beta, c.data(),
                                   batch, M * K, K * N, M * N);
              results[device == Device::CUDA] = c.to_vector();
            }
            expect_matches(results[1], results[0], 1e-5, "gemm");
          }
}

TEST_CASE("cuda matmul and linear match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(6);
  expect_same_on_cuda("matmul", [](auto& in) { return matmul(in[0], in[1]); },
                      {input(gen, {17, 19}), input(gen, {19, 23})});
  expect_same_on_cuda("batched matmul", [](auto& in) { return matmul(in[0], in[1]); },
                      {input(gen, {3, 17, 19}), input(gen, {3, 19, 23})});
  expect_same_on_cuda("matmul with a shared right operand",
                      [](auto& in) { return matmul(in[0], in[1]); },
                      {input(gen, {2, 3, 17, 19}), input(gen, {19, 23})});
  expect_same_on_cuda("linear with bias", [](auto& in) { return linear(in[0], in[1], in[2]); },
                      {input(gen, {2, 5, 31}), input(gen, {13, 31}), input(gen, {13})});
  expect_same_on_cuda("linear without bias",
                      [](auto& in) { return linear(in[0], in[1], Tensor()); },
                      {input(gen, {7, 64}), input(gen, {10, 64})});
}

TEST_CASE("cuda conv2d matches the cpu: padding, stride, dilation, groups, depthwise") {
  if (skip_without_cuda()) return;
  Generator gen(7);
  struct Case {
    const char* name;
    Shape x;
    int64_t O, KH, KW;
    Conv2dOptions opt;
    bool bias;
  };
  const Case cases[] = {
      {"3x3 padded", {2, 3, 11, 13}, 5, 3, 3, {1, 1, 1, 1, 1, 1, 1}, true},
      {"strided dilated", {2, 4, 15, 12}, 6, 3, 3, {2, 2, 0, 0, 2, 2, 1}, false},
      {"grouped", {3, 4, 9, 9}, 6, 3, 3, {1, 1, 1, 1, 1, 1, 2}, true},
      {"depthwise", {2, 8, 10, 9}, 8, 3, 3, {2, 2, 1, 1, 1, 1, 8}, true},
      {"pointwise", {2, 16, 7, 7}, 8, 1, 1, {}, true},
      {"asymmetric", {1, 3, 12, 14}, 4, 5, 3, {1, 2, 2, 1, 1, 1, 1}, true},
      {"patch embedding", {2, 3, 16, 16}, 12, 4, 4, {4, 4, 0, 0, 1, 1, 1}, true},
  };
  for (const Case& c : cases) {
    std::vector<Tensor> in = {input(gen, c.x), input(gen, {c.O, c.x[1] / c.opt.groups, c.KH, c.KW}),
                              c.bias ? input(gen, {c.O}) : Tensor()};
    const Conv2dOptions opt = c.opt;
    expect_same_on_cuda(c.name, [opt](auto& v) { return conv2d(v[0], v[1], v[2], opt); }, in,
                        1e-4);
  }
}

TEST_CASE("cuda pooling matches the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(8);
  // Ties everywhere: the first maximum must win on both devices.
  Tensor tied = grid_values(gen, {2, 3, 11, 10}, 0.25f, 6);
  expect_same_on_cuda("max 3x3 s2 p1 with ties",
                      [](auto& in) { return max_pool2d(in[0], 3, 2, 1); }, {tied});
  expect_same_on_cuda("max 2x2 s2", [](auto& in) { return max_pool2d(in[0], 2, 2, 0); },
                      {input(gen, {2, 4, 9, 8})});
  expect_same_on_cuda("max 3x3 s1 p1", [](auto& in) { return max_pool2d(in[0], 3, 1, 1); },
                      {input(gen, {1, 2, 7, 6})});
  for (bool include_pad : {true, false}) {
    CAPTURE(include_pad);
    expect_same_on_cuda("avg 3x3 s2 p1",
                        [=](auto& in) { return avg_pool2d(in[0], 3, 2, 1, include_pad); },
                        {input(gen, {2, 3, 11, 10})});
    expect_same_on_cuda("avg 3x3 s1 p1",
                        [=](auto& in) { return avg_pool2d(in[0], 3, 1, 1, include_pad); },
                        {input(gen, {1, 2, 6, 7})});
  }
  expect_same_on_cuda("avg 2x2 s2", [](auto& in) { return avg_pool2d(in[0], 2, 2, 0); },
                      {input(gen, {2, 3, 8, 9})});
  const std::pair<Shape, std::pair<int64_t, int64_t>> adaptive[] = {
      {{2, 3, 7, 7}, {3, 3}},  // overlapping bins
      {{2, 3, 5, 6}, {5, 6}},  // identity
      {{1, 2, 3, 4}, {5, 7}},  // more bins than inputs
      {{2, 4, 9, 7}, {1, 1}},  // global
  };
  for (const auto& [shape, out] : adaptive) {
    const int64_t oh = out.first, ow = out.second;
    expect_same_on_cuda("adaptive avg " + shape_str(shape),
                        [=](auto& in) { return adaptive_avg_pool2d(in[0], oh, ow); },
                        {input(gen, shape)});
  }
}

TEST_CASE("cuda batch norm and layer norm match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(9);
  for (bool training : {true, false}) {
    CAPTURE(training);
    const Shape x_shape = {4, 6, 5, 7};
    // An offset mean tests the two-pass variance.
    std::vector<Tensor> in = {input(gen, x_shape, 9.0f, 11.0f), input(gen, {6}, 0.5f, 1.5f),
                              input(gen, {6}), constant(gen, {6}, 9.0f, 11.0f),
                              constant(gen, {6}, 0.2f, 1.0f)};
    expect_same_on_cuda("batch_norm2d", [=](auto& v) {
      return batch_norm2d(v[0], v[1], v[2], v[3], v[4], training, 0.1f, 1e-5f);
    }, in, 1e-4);
    in[1] = Tensor();
    in[2] = Tensor();
    expect_same_on_cuda("batch_norm2d without affine", [=](auto& v) {
      return batch_norm2d(v[0], v[1], v[2], v[3], v[4], training, 0.1f, 1e-5f);
    }, in, 1e-4);
  }
  expect_same_on_cuda("batch_norm2d large planes", [](auto& v) {
    return batch_norm2d(v[0], v[1], v[2], Tensor(), Tensor(), true, 0.1f, 1e-5f);
  }, {input(gen, {8, 3, 64, 64}), input(gen, {3}), input(gen, {3})}, 1e-4);

  expect_same_on_cuda("layer_norm", [](auto& v) { return layer_norm(v[0], v[1], v[2], 1e-5f); },
                      {input(gen, {5, 7, 33}, 2.0f, 4.0f), input(gen, {33}), input(gen, {33})},
                      1e-4);
  expect_same_on_cuda("layer_norm without affine",
                      [](auto& v) { return layer_norm(v[0], Tensor(), Tensor(), 1e-6f); },
                      {input(gen, {10, 768})}, 1e-4);
  expect_same_on_cuda("layer_norm many rows",
                      [](auto& v) { return layer_norm(v[0], v[1], v[2], 1e-5f); },
                      {input(gen, {3000, 96}), input(gen, {96}), input(gen, {96})}, 1e-4);
}

TEST_CASE("cuda softmax and log_softmax match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(10);
  const Shape shapes[] = {{4, 1}, {6, 10}, {3, 5, 49}, {2, 197}, {3, 1000}};
  for (const Shape& shape : shapes) {
    // Offset logits: the max shift keeps exp finite.
    Tensor x = input(gen, shape, 40.0f, 50.0f);
    expect_same_on_cuda("softmax " + shape_str(shape), [](auto& in) { return softmax(in[0]); },
                        {x});
    expect_same_on_cuda("log_softmax " + shape_str(shape),
                        [](auto& in) { return log_softmax(in[0]); }, {x}, 1e-4);
  }
}

TEST_CASE("cuda layout ops match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(11);
  Tensor x4 = input(gen, {2, 3, 4, 5});
  for (const std::vector<int>& perm : std::vector<std::vector<int>>{
           {0, 2, 3, 1}, {3, 1, 0, 2}, {0, 1, 3, 2}, {1, 0, 2, 3}, {0, 1, 2, 3}})
    expect_same_on_cuda("permute", [perm](auto& in) { return permute(in[0], perm); }, {x4}, 0.0);
  // Swin's window partition: 6-D with merged dims.
  expect_same_on_cuda("window partition permute",
                      [](auto& in) { return permute(in[0], {0, 1, 3, 2, 4, 5}); },
                      {input(gen, {2, 4, 3, 4, 3, 5})}, 0.0);
  expect_same_on_cuda("transpose", [](auto& in) { return transpose(in[0], 1, 2); },
                      {input(gen, {3, 70, 33})}, 0.0);
  for (int64_t dim : {0, 1, -1})
    expect_same_on_cuda("concat dim " + std::to_string(dim),
                        [dim](auto& in) { return concat({in[0], in[1]}, dim); },
                        {input(gen, {3, 4, 5}), input(gen, {3, 4, 5})}, 0.0);
  expect_same_on_cuda("narrow", [](auto& in) { return narrow(in[0], 1, 2, 3); },
                      {input(gen, {3, 7, 4})}, 0.0);
  expect_same_on_cuda("roll", [](auto& in) { return roll(in[0], {-2, 3}, {1, 2}); },
                      {input(gen, {2, 7, 5, 3})}, 0.0);
  expect_same_on_cuda("pad", [](auto& in) { return pad(in[0], {1, 2, 0, 3}, 0.5f); },
                      {input(gen, {2, 3, 4, 5})}, 0.0);
  // Repeated indices: the backward adds their gradients (atomics on CUDA).
  Tensor index = Tensor::from_int64({2, 0, 2, 4, 2, 1}, {6});
  expect_same_on_cuda("index_select dim 0",
                      [](auto& in) { return index_select(in[0], 0, in[1]); },
                      {input(gen, {5, 3, 4}), index}, 1e-6);
  expect_same_on_cuda("index_select dim 1",
                      [](auto& in) { return index_select(in[0], 1, in[1]); },
                      {input(gen, {2, 5, 7}), index}, 1e-6);
}

TEST_CASE("cuda quantization kernels match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(12);
  auto scales = [&](int64_t n, float lo, float hi) { return input(gen, {n}, lo, hi); };
  auto zero_points = [&](int64_t n, int levels) {
    std::vector<float> z(n);
    for (float& v : z) v = std::nearbyint(gen.uniform(0.0f, float(levels - 1)));
    return Tensor::from_vector(z, {n});
  };
  const struct {
    const char* name;
    Shape shape;
    int64_t axis, channels;
  } layouts[] = {
      {"per tensor", {3, 4, 5, 6}, 0, 1},
      {"per channel axis 1", {3, 4, 5, 6}, 1, 4},
      {"per channel weights", {8, 3, 3, 3}, 0, 8},
      {"per token channel", {2, 9, 12}, -1, 12},
      {"per tensor large", {16, 32, 32, 32}, 0, 1},
  };
  for (const auto& l : layouts) {
    const int64_t axis = l.axis;
    for (int bits : {4, 8}) {
      expect_same_on_cuda(std::string("fake_quantize ") + l.name,
                          [=](auto& v) { return fake_quantize(v[0], v[1], v[2], axis, bits); },
                          {input(gen, l.shape, -2.0f, 3.0f), scales(l.channels, 0.02f, 0.3f),
                           zero_points(l.channels, 1 << bits)},
                          1e-5);
    }
  }
  // Exact halves of the step: round half to even, identical on both devices.
  expect_same_on_cuda("fake_quantize halves",
                      [](auto& v) { return fake_quantize(v[0], v[1], v[2], 0, 4); },
                      {grid_values(gen, {200}, 0.125f, 64), Tensor::from_vector({0.25f}, {1}),
                       Tensor::from_vector({8.0f}, {1})},
                      1e-6);

  for (bool hard : {false, true}) {
    Tensor w = constant(gen, {6, 3, 3, 3});
    expect_same_on_cuda(hard ? "adaround hard" : "adaround soft", [=](auto& v) {
      return adaround_quantize(v[0], v[1], v[2], v[3], 4, hard);
    }, {w, input(gen, w.shape(), -4.0f, 4.0f), constant(gen, {6}, 0.05f, 0.2f), zero_points(6, 16)},
                        1e-5);
  }
  for (float beta : {20.0f, 2.0f}) {
    expect_same_on_cuda("adaround regularizer beta " + std::to_string(beta),
                        [=](auto& v) { return adaround_round_loss(v[0], beta, 0.01f); },
                        {input(gen, {64, 3, 3, 3}, -3.0f, 3.0f)}, 1e-5);
  }

  // Statistics for quantizer initialization, one channel constant.
  Tensor x = constant(gen, {40, 3, 1000}, -2.0f, 1.0f);
  std::vector<float> values = x.to_vector();
  for (int64_t o = 0; o < 40; ++o)
    for (int64_t i = 0; i < 1000; ++i) values[(o * 3 + 2) * 1000 + i] = 0.5f;
  x = Tensor::from_vector(values, x.shape());
  Tensor xc = x.to(Device::CUDA);
  for (bool per_channel : {true, false}) {
    CAPTURE(per_channel);
    ChannelRange cpu = channel_range(x, 1, per_channel), gpu = channel_range(xc, 1, per_channel);
    CHECK(gpu.min == cpu.min);
    CHECK(gpu.max == cpu.max);
    expect_matches(quant_range_scores(xc, 1, per_channel, cpu, 80, 4, 2.4f),
                   quant_range_scores(x, 1, per_channel, cpu, 80, 4, 2.4f), 1e-4, "range scores");
  }
}

TEST_CASE("cuda optimizer updates match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(13);
  std::vector<Tensor> in = {constant(gen, {1000, 3}), constant(gen, {1000, 3})};
  expect_same_on_cuda("adam", [](auto& v) {
    Tensor param = v[0];
    Adam adam({param}, 0.01f, 0.9f, 0.999f, 1e-8f, 0.01f);
    for (int step = 1; step <= 3; ++step) {
      param.set_grad(mul(v[1], float(step)));
      adam.step();
    }
    return param;
  }, in, 1e-5);
  for (float momentum : {0.0f, 0.9f}) {
    expect_same_on_cuda("sgd", [=](auto& v) {
      Tensor param = v[0];
      SGD sgd({param}, 0.1f, momentum, 0.001f);
      for (int step = 1; step <= 3; ++step) {
        param.set_grad(mul(v[1], float(step)));
        sgd.step();
      }
      return param;
    }, in, 1e-5);
  }
}

TEST_CASE("cuda losses match the cpu") {
  if (skip_without_cuda()) return;
  Generator gen(14);
  Tensor labels = Tensor::from_int64({3, 0, 9, 9, 1, 5}, {6});
  expect_same_on_cuda("cross_entropy", [](auto& v) { return cross_entropy(v[0], v[1]); },
                      {input(gen, {6, 10}, -3.0f, 3.0f), labels}, 1e-5);
  Tensor p = softmax(constant(gen, {4, 10}));
  expect_same_on_cuda("kl_div_batchmean",
                      [](auto& v) { return kl_div_batchmean(log_softmax(v[0]), v[1]); },
                      {input(gen, {4, 10}), p}, 1e-5);
  expect_same_on_cuda("reconstruction_mse",
                      [](auto& v) { return reconstruction_mse(v[0], v[1]); },
                      {input(gen, {3, 8, 5, 5}), constant(gen, {3, 8, 5, 5})}, 1e-5);
}
