// Autograd mechanics: shared subexpressions, non-leaf gradients, the no-grad
// guard, accumulation across backward calls and graph release.
#include <memory>
#include <stdexcept>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

TEST_CASE("a tensor used twice receives the sum of both gradients") {
  Tensor x = Tensor::from_vector({1.0f, -2.0f, 3.0f}, {3}).set_requires_grad(true);
  // y = x*x + 3x  ->  dy/dx = 2x + 3
  Tensor y = sum(add(mul(x, x), mul(x, 3.0f)));
  y.backward();
  expect_close(x.grad(), std::vector<double>{5.0, -1.0, 9.0});
}

TEST_CASE("diamond graph: shared intermediate feeds two branches") {
  Tensor x = Tensor::from_vector({0.5f, 1.5f}, {2}).set_requires_grad(true);
  Tensor h = exp(x);                 // shared
  Tensor y = sum(mul(h, h) + h);     // d/dx = 2e^{2x} + e^x
  y.backward();
  std::vector<double> ref;
  for (double v : {0.5, 1.5}) ref.push_back(2 * std::exp(2 * v) + std::exp(v));
  expect_close(x.grad(), ref, 1e-5, 1e-5);
}

TEST_CASE("gradient of an intermediate tensor on request") {
  Tensor x = Tensor::from_vector({1.0f, 2.0f}, {2}).set_requires_grad(true);
  Tensor z = mul(x, 2.0f);
  z.retain_grad();
  Tensor w = mul(x, 5.0f);  // not retained
  Tensor y = sum(mul(z, z) + w);
  y.backward();
  expect_close(z.grad(), std::vector<double>{4.0, 8.0});  // 2z
  CHECK_FALSE(w.grad().defined());
  expect_close(x.grad(), std::vector<double>{13.0, 21.0});  // 8x + 5
}

TEST_CASE("no-grad guard records nothing and restores the previous state") {
  Tensor x = Tensor::ones({2}).set_requires_grad(true);
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    Tensor y = mul(x, 2.0f);
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(static_cast<bool>(y.grad_fn()));
    {
      NoGradGuard inner;
    }
    CHECK_FALSE(grad_enabled());
  }
  CHECK(grad_enabled());
  CHECK(mul(x, 2.0f).requires_grad());
}

TEST_CASE("leaf gradients accumulate across backward calls until zero_grad") {
  Tensor x = Tensor::from_vector({1.0f, 2.0f}, {2}).set_requires_grad(true);
  sum(mul(x, 3.0f)).backward();
  sum(mul(x, 3.0f)).backward();
  expect_close(x.grad(), std::vector<double>{6.0, 6.0});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("backward with an explicit upstream gradient") {
  Tensor x = Tensor::from_vector({1.0f, 2.0f, 3.0f}, {3}).set_requires_grad(true);
  Tensor y = mul(x, x);
  y.backward(Tensor::from_vector({1.0f, 0.0f, -1.0f}, {3}));
  expect_close(x.grad(), std::vector<double>{2.0, 0.0, -6.0});
}

TEST_CASE("inputs that do not require grad get none") {
  Tensor x = Tensor::ones({2}).set_requires_grad(true);
  Tensor c = Tensor::full({2}, 3.0f);
  sum(mul(x, c)).backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(c.grad().defined());
}

TEST_CASE("the graph is released after backward") {
  Tensor x = Tensor::ones({4}).set_requires_grad(true);
  Tensor h = exp(x);
  std::weak_ptr<TensorImpl> saved = h.impl_ptr();
  Tensor y = sum(mul(h, h));
  h = Tensor();  // only the graph holds the intermediate now
  CHECK_FALSE(saved.expired());
  y.backward();
  CHECK(y.is_leaf());       // its node is gone
  CHECK(saved.expired());   // and with it every saved tensor
}

TEST_CASE("deep chains do not overflow the stack") {
  Tensor x = Tensor::ones({1}).set_requires_grad(true);
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = add(y, 0.0f);
  sum(y).backward();
  expect_close(x.grad(), std::vector<double>{1.0});
}

TEST_CASE("errors name the op and the shapes") {
  Tensor a = Tensor::ones({2, 3}), b = Tensor::ones({4});
  CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("[2, 3]"), std::invalid_argument);
  Tensor x = Tensor::ones({2}).set_requires_grad(true);
  CHECK_THROWS_WITH_AS(mul(x, 2.0f).backward(), doctest::Contains("one-element"),
                       std::invalid_argument);
}
