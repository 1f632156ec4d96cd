// matmul and linear: forward against triple loops in double, backward against
// finite differences on small shapes and against the gradient formulas
// (dA = dC B^T, dB = A^T dC) on shapes large enough for the parallel paths.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/parallel.h"
#include "kernels/kernels.h"
#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

// C[b] = A[b] @ B[b] for `batch` row-major matrices; a stride of 0 reuses one
// matrix for every batch entry. Transposes read A as [K, M] and B as [N, K].
std::vector<double> matmul_ref(const std::vector<float>& a, const std::vector<float>& b,
                               int64_t batch, int64_t M, int64_t K, int64_t N, int64_t stride_a,
                               int64_t stride_b, bool trans_a = false, bool trans_b = false) {
  std::vector<double> c(batch * M * N, 0.0);
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          double av = a[p * stride_a + (trans_a ? k * M + i : i * K + k)];
          double bv = b[p * stride_b + (trans_b ? j * K + k : k * N + j)];
          acc += av * bv;
        }
        c[(p * M + i) * N + j] = acc;
      }
  return c;
}

}  // namespace

TEST_CASE("matmul 2-D, odd sizes and edge sizes") {
  Generator gen(1);
  struct Case {
    int64_t M, K, N;
  };
  for (const Case& c : {Case{7, 5, 3}, Case{1, 4, 6}, Case{5, 1, 4}, Case{3, 6, 1}}) {
    CAPTURE(c.M);
    CAPTURE(c.K);
    CAPTURE(c.N);
    Tensor a = random_input({c.M, c.K}, gen), b = random_input({c.K, c.N}, gen);
    Tensor out = matmul(a, b);
    CHECK(out.shape() == Shape{c.M, c.N});
    expect_close(out, matmul_ref(a.to_vector(), b.to_vector(), 1, c.M, c.K, c.N, 0, 0));
    expect_gradients([](auto& in) { return matmul(in[0], in[1]); }, {a, b});
  }
}

TEST_CASE("matmul batched 3-D and 4-D") {
  Generator gen(2);
  for (const Shape& batch : {Shape{4}, Shape{2, 3}}) {
    CAPTURE(shape_str(batch));
    const int64_t M = 7, K = 5, N = 3, nb = shape_numel(batch);
    Shape sa = batch, sb = batch;
    sa.insert(sa.end(), {M, K});
    sb.insert(sb.end(), {K, N});
    Tensor a = random_input(sa, gen), b = random_input(sb, gen);
    Tensor out = matmul(a, b);
    Shape so = batch;
    so.insert(so.end(), {M, N});
    CHECK(out.shape() == so);
    expect_close(out, matmul_ref(a.to_vector(), b.to_vector(), nb, M, K, N, M * K, K * N));
    expect_gradients([](auto& in) { return matmul(in[0], in[1]); }, {a, b});
  }
}

TEST_CASE("matmul with one 2-D b shared by a batched a") {
  Generator gen(3);
  Tensor a = random_input({2, 3, 7, 5}, gen), b = random_input({5, 3}, gen);
  Tensor out = matmul(a, b);
  CHECK(out.shape() == Shape{2, 3, 7, 3});
  expect_close(out, matmul_ref(a.to_vector(), b.to_vector(), 6, 7, 5, 3, 35, 0));
  expect_gradients([](auto& in) { return matmul(in[0], in[1]); }, {a, b});
  // Gradient of only one side.
  Tensor fixed = gen.uniform_tensor({5, 3}, -1.0f, 1.0f);
  expect_gradients([&](auto& in) { return matmul(in[0], fixed); }, {a});
}

TEST_CASE("matmul rejects mismatched shapes") {
  Tensor a = Tensor::zeros({2, 3, 4});
  CHECK_THROWS_AS(matmul(a, Tensor::zeros({3, 5})), std::invalid_argument);     // inner dims
  CHECK_THROWS_AS(matmul(a, Tensor::zeros({3, 4, 5})), std::invalid_argument);  // batch dims
  CHECK_THROWS_AS(matmul(a, Tensor::zeros({4})), std::invalid_argument);        // rank 1
}

TEST_CASE("matmul on shapes large enough for the parallel paths") {
  Generator gen(4);
  // One big GEMM (Eigen's threads), a batch of GEMMs (one per thread), and a
  // shared b folded into one GEMM.
  struct Case {
    int64_t batch, M, K, N;
    bool shared_b;
  };
  for (const Case& c : {Case{1, 130, 70, 90, false}, Case{8, 33, 20, 17, false},
                        Case{3, 50, 70, 90, true}}) {
    CAPTURE(c.batch);
    CAPTURE(c.shared_b);
    Shape sa{c.batch, c.M, c.K}, sb{c.batch, c.K, c.N};
    if (c.shared_b) sb = {c.K, c.N};
    Tensor a = random_input(sa, gen), b = random_input(sb, gen);
    std::vector<float> va = a.to_vector(), vb = b.to_vector();
    const int64_t stride_b = c.shared_b ? 0 : c.K * c.N;
    Tensor out = matmul(a, b);
    expect_close(out, matmul_ref(va, vb, c.batch, c.M, c.K, c.N, c.M * c.K, stride_b), 1e-4, 1e-4);
    Tensor g = gen.uniform_tensor(out.shape(), -1.0f, 1.0f);
    std::vector<float> vg = g.to_vector();
    out.backward(g);
    // dA = G @ B^T per batch entry.
    expect_close(a.grad(), matmul_ref(vg, vb, c.batch, c.M, c.N, c.K, c.M * c.N, stride_b, false,
                                      true),
                 1e-4, 1e-4, "dA");
    // dB = A^T @ G, summed over the batch when b is shared.
    std::vector<double> db = matmul_ref(va, vg, c.batch, c.K, c.M, c.N, c.M * c.K, c.M * c.N, true);
    if (c.shared_b) {
      for (int64_t p = 1; p < c.batch; ++p)
        for (int64_t i = 0; i < c.K * c.N; ++i) db[i] += db[p * c.K * c.N + i];
      db.resize(c.K * c.N);
    }
    expect_close(b.grad(), db, 1e-4, 1e-4, "dB");
  }
}

TEST_CASE("linear with and without bias, 1-D, 2-D and 3-D input") {
  Generator gen(5);
  const int64_t in = 5, out = 3;
  for (const Shape& xs : {Shape{in}, Shape{7, in}, Shape{2, 3, in}}) {
    for (bool with_bias : {true, false}) {
      CAPTURE(shape_str(xs));
      CAPTURE(with_bias);
      Tensor x = random_input(xs, gen), w = random_input({out, in}, gen);
      Tensor bias = with_bias ? random_input({out}, gen) : Tensor();
      Tensor y = linear(x, w, bias);
      Shape ys = xs;
      ys.back() = out;
      CHECK(y.shape() == ys);
      const int64_t rows = x.numel() / in;
      std::vector<double> ref =
          matmul_ref(x.to_vector(), w.to_vector(), 1, rows, in, out, 0, 0, false, true);
      if (with_bias) {
        std::vector<float> vb = bias.to_vector();
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < out; ++o) ref[r * out + o] += vb[o];
      }
      expect_close(y, ref);
      expect_gradients([](auto& t) { return linear(t[0], t[1], t[2]); }, {x, w, bias});
    }
  }
  Tensor x = Tensor::zeros({2, 5});
  CHECK_THROWS_AS(linear(x, Tensor::zeros({3, 4}), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(linear(x, Tensor::zeros({3, 5}), Tensor::zeros({4})), std::invalid_argument);
  CHECK_THROWS_AS(linear(x, Tensor::zeros({5}), Tensor()), std::invalid_argument);
}

TEST_CASE("linear on a large input against the gradient formulas") {
  Generator gen(6);
  const int64_t B = 2, T = 65, in = 70, out = 90, rows = B * T;
  Tensor x = random_input({B, T, in}, gen), w = random_input({out, in}, gen);
  Tensor bias = random_input({out}, gen);
  std::vector<float> vx = x.to_vector(), vw = w.to_vector(), vb = bias.to_vector();
  Tensor y = linear(x, w, bias);
  std::vector<double> ref = matmul_ref(vx, vw, 1, rows, in, out, 0, 0, false, true);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) ref[r * out + o] += vb[o];
  expect_close(y, ref, 1e-4, 1e-4, "y");
  Tensor g = gen.uniform_tensor(y.shape(), -1.0f, 1.0f);
  std::vector<float> vg = g.to_vector();
  y.backward(g);
  expect_close(x.grad(), matmul_ref(vg, vw, 1, rows, out, in, 0, 0), 1e-4, 1e-4, "dx = g W");
  expect_close(w.grad(), matmul_ref(vg, vx, 1, out, rows, in, 0, 0, true), 1e-4, 1e-4,
               "dW = g^T x");
  std::vector<double> db(out, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) db[o] += vg[r * out + o];
  expect_close(bias.grad(), db, 1e-4, 1e-4, "db");
}

TEST_CASE("the GEMM of every CPU instruction set: transposes, alpha and beta, tile and depth edges") {
  const std::string in_use = cpu_isa();
  Generator gen(6);
  struct Case {
    int64_t M, N, K;
  };
  // Register tile edges (14x32, 13x32 and Eigen's), several depth blocks of
  // 256, panels of 512 columns and 16 slivers of rows, products large
  // enough for threads, and an empty sum (C = beta C).
  const Case cases[] = {{1, 1, 1},    {13, 31, 7},    {14, 32, 256},   {15, 33, 257}, {29, 70, 600},
                        {3, 530, 40}, {130, 600, 90}, {300, 530, 520}, {5, 40, 0}};
  struct Scale {
    float alpha, beta;
  };
  for (const std::string& isa : cpu_isas()) {
    CAPTURE(isa);
    set_cpu_isa(isa);
    for (const Case& c : cases)
      for (int t = 0; t < 4; ++t)
        for (const Scale& s : {Scale{1.0f, 0.0f}, Scale{0.5f, 1.0f}, Scale{-2.0f, 0.25f}}) {
          const bool ta = t & 1, tb = t & 2;
          CAPTURE(c.M);
          CAPTURE(c.N);
          CAPTURE(c.K);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(s.alpha);
          const std::vector<float> a = gen.uniform_tensor({c.M * c.K}, -1, 1).to_vector();
          const std::vector<float> b = gen.uniform_tensor({c.K * c.N}, -1, 1).to_vector();
          std::vector<float> out = gen.uniform_tensor({c.M * c.N}, -1, 1).to_vector();
          std::vector<double> expected = matmul_ref(a, b, 1, c.M, c.K, c.N, 0, 0, ta, tb);
          for (size_t i = 0; i < expected.size(); ++i)
            expected[i] = s.alpha * expected[i] + (s.beta == 0.0f ? 0.0 : s.beta * out[i]);
          // beta 0 overwrites C, whatever it held.
          if (s.beta == 0.0f) std::fill(out.begin(), out.end(), NAN);
          cpu::gemm(ta, tb, c.M, c.N, c.K, s.alpha, a.data(), b.data(), s.beta, out.data(), 1, 0,
                    0, 0);
          expect_close(out, expected, 2e-4, 1e-4);
        }
  }
  set_cpu_isa(in_use);
}

// Eigen's blocking depends on the thread count; the AVX-512 tiles' does not.
TEST_CASE("the AVX-512 GEMM gives the same bits on 1 and 2 threads") {
  const std::vector<std::string> isas = cpu_isas();
  if (std::find(isas.begin(), isas.end(), "avx512") == isas.end()) {
    MESSAGE("this CPU has no AVX-512: nothing to check");
    return;
  }
  const std::string in_use = cpu_isa();
  const int threads = num_threads();
  set_cpu_isa("avx512");
  Generator gen(7);
  const int64_t M = 200, N = 700, K = 600;
  const std::vector<float> a = gen.uniform_tensor({M * K}, -1, 1).to_vector();
  const std::vector<float> b = gen.uniform_tensor({K * N}, -1, 1).to_vector();
  for (int t = 0; t < 4; ++t) {
    CAPTURE(t);
    std::vector<float> results[2];
    for (int n : {1, 2}) {
      set_num_threads(n);
      results[n - 1].assign(M * N, 0.0f);
      cpu::gemm(t & 1, t & 2, M, N, K, 1.0f, a.data(), b.data(), 0.0f, results[n - 1].data(), 1,
                0, 0, 0);
    }
    CHECK(results[0] == results[1]);
  }
  set_num_threads(threads);
  set_cpu_isa(in_use);
}

TEST_CASE("set_cpu_isa refuses an instruction set this machine does not run, naming those it does") {
  const std::string message = error_message([] { set_cpu_isa("avx9000"); });
  CHECK(message.find("'avx9000'") != std::string::npos);
  CHECK(message.find(cpu_isas().front()) != std::string::npos);
}
