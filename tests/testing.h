// Shared helpers for the tests: random inputs, closeness checks and a
// finite-difference gradient checker for the kernel tests; temporary folders,
// the fixtures' location, small fashion32 subsets and in-process command runs
// for the tests of the tools.
//
// Adding an op test: build random inputs with random_input(), compare the
// forward result against a plain loop reference with expect_close(), then
// call expect_gradients() with a lambda that applies the op.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "tools/data/dataset.h"

namespace pk::testing {

// The message of the exception `body` throws, or "" when it throws none.
inline std::string error_message(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Expects f to throw std::invalid_argument whose message contains fragment.
inline void expect_invalid(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    FAIL("expected std::invalid_argument mentioning '" << fragment << "'");
  } catch (const std::invalid_argument& e) {
    CHECK_MESSAGE(std::string(e.what()).find(fragment) != std::string::npos, e.what());
  }
}

inline Tensor random_input(const Shape& shape, Generator& gen, float lo = -1.0f, float hi = 1.0f) {
  return gen.uniform_tensor(shape, lo, hi).set_requires_grad(true);
}

// |actual - expected| <= atol + rtol * |expected| element-wise; reports the
// worst element.
inline void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                         double atol = 1e-5, double rtol = 1e-4, const std::string& what = "") {
  REQUIRE_MESSAGE(actual.size() == expected.size(), what << ": size " << actual.size()
                                                         << " vs " << expected.size());
  // Reports the element furthest outside its tolerance.
  double worst_excess = -INFINITY;
  size_t worst_i = 0;
  bool ok = true;
  for (size_t i = 0; i < actual.size(); ++i) {
    double err = std::fabs(actual[i] - expected[i]);
    double excess = err - (atol + rtol * std::fabs(expected[i]));
    if (!(excess <= 0.0)) ok = false;  // NaN-safe
    if (!(excess <= worst_excess)) { worst_excess = excess; worst_i = i; }
  }
  if (actual.empty()) return;
  CHECK_MESSAGE(ok, what << ": worst element " << worst_i << " got " << actual[worst_i]
                         << " expected " << expected[worst_i] << " (|diff| "
                         << std::fabs(actual[worst_i] - expected[worst_i]) << ")");
}

inline void expect_close(const Tensor& actual, const std::vector<double>& expected,
                         double atol = 1e-5, double rtol = 1e-4, const std::string& what = "") {
  expect_close(actual.to_vector(), expected, atol, rtol, what);
}

inline void expect_close(const Tensor& actual, const Tensor& expected, double atol = 1e-5,
                         double rtol = 1e-4, const std::string& what = "") {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(),
                  what << ": shape " << shape_str(actual.shape()) << " vs "
                       << shape_str(expected.shape()));
  std::vector<float> e = expected.to_vector();
  expect_close(actual.to_vector(), std::vector<double>(e.begin(), e.end()), atol, rtol, what);
}

struct GradCheckOptions {
  double step = 1e-2;   // central difference step
  double atol = 2e-3;
  double rtol = 2e-2;
};

// Checks d(sum(w * f(inputs)))/d(input) from backward() against central
// finite differences, for every input that requires grad. The weights w are
// fixed random numbers so that every output element matters; the objective
// is accumulated in double precision.
inline void expect_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                             std::vector<Tensor> inputs, const GradCheckOptions& opt = {},
                             uint64_t seed = 7) {
  Generator gen(seed);
  Tensor out0;
  {
    NoGradGuard guard;
    out0 = f(inputs);
  }
  Tensor weights = gen.uniform_tensor(out0.shape(), -1.0f, 1.0f);
  std::vector<float> w = weights.to_vector();
  auto objective = [&]() {
    NoGradGuard guard;
    std::vector<float> y = f(inputs).to_vector();
    double acc = 0.0;
    for (size_t i = 0; i < y.size(); ++i) acc += static_cast<double>(w[i]) * y[i];
    return acc;
  };
  for (Tensor& t : inputs)
    if (t.defined()) t.zero_grad();
  Tensor out = f(inputs);
  REQUIRE_MESSAGE(out.requires_grad(), "op output does not require grad");
  out.backward(weights);
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    REQUIRE_MESSAGE(x.grad().defined(), "input " << k << " received no gradient");
    std::vector<float> analytic = x.grad().to_vector();
    std::vector<double> numeric(x.numel());
    float* p = x.data();  // CPU inputs: perturb in place
    for (int64_t i = 0; i < x.numel(); ++i) {
      float orig = p[i];
      p[i] = static_cast<float>(orig + opt.step);
      double up = objective();
      p[i] = static_cast<float>(orig - opt.step);
      double down = objective();
      p[i] = orig;
      numeric[i] = (up - down) / (2.0 * opt.step);
    }
    expect_close(analytic, numeric, opt.atol, opt.rtol, "gradient of input " + std::to_string(k));
  }
}

// A fresh, empty directory under the system temp directory, removed with
// its contents at scope exit. The process id keeps test binaries and test
// cases run in parallel apart.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("packptq_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path / name).string(); }
  // The names directly inside, in directory order.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path))
      names.push_back(entry.path().filename().string());
    return names;
  }
};

// The shared fixtures: models/<fixture>/ and the fashion32 dataset.
inline std::filesystem::path fixtures_dir() { return PACKPTQ_FIXTURES_DIR; }

// <root>/<split>/<class>/ with symbolic links to the first `per_class` images
// of each class of <source_root>/<split> (ImageFolder order): a dataset small
// enough for a quick run.
inline void link_image_subset(const std::filesystem::path& source_root,
                              const std::filesystem::path& root, const std::string& split,
                              size_t per_class) {
  const data::ImageFolder folder = data::scan_image_folder(source_root.string(), split);
  std::map<int64_t, size_t> taken;
  for (const data::Sample& sample : folder.samples) {
    if (taken[sample.label]++ >= per_class) continue;
    const std::filesystem::path source(sample.path);
    const std::filesystem::path target = root / split / folder.classes[sample.label];
    std::filesystem::create_directories(target);
    std::filesystem::create_symlink(source, target / source.filename());
  }
}

// Runs a command's entry point in-process as main() would run it (args[0] is
// the command name, argv ends with a null pointer); returns its exit code.
inline int run_command(int (*command)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  return command(static_cast<int>(args.size()), argv.data());
}

}  // namespace pk::testing
