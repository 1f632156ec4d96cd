// matmul and linear: forward against triple loops in double, backward against
// finite differences on small shapes and against the gradient formulas
// (dA = dC B^T, dB = A^T dC) on shapes large enough for the parallel paths.
#include <stdexcept>

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
