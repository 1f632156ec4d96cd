// Layout ops: forward against plain index loops, backward against finite
// differences, plus the views (reshape, slice_rows) sharing storage.
#include <algorithm>
#include <functional>
#include <numeric>
#include <stdexcept>

#include "tests/testing.h"

using namespace pk;
using namespace pk::testing;

namespace {

using Index = std::vector<int64_t>;

Index unravel(int64_t i, const Shape& shape) {
  Index idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  return idx;
}

int64_t ravel(const Index& idx, const Shape& shape) {
  int64_t i = 0;
  for (size_t d = 0; d < shape.size(); ++d) i = i * shape[d] + idx[d];
  return i;
}

// Reference for copy-like ops: the output element at multi-index o is x at
// the index `source` writes, or `fill` where `source` returns false.
std::vector<double> gather_ref(const Tensor& x, const Shape& out_shape,
                               const std::function<bool(const Index& o, Index& in)>& source,
                               double fill = 0.0) {
  std::vector<float> v = x.to_vector();
  std::vector<double> out(shape_numel(out_shape));
  Index in(x.dim());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = source(unravel(static_cast<int64_t>(i), out_shape), in) ? v[ravel(in, x.shape())]
                                                                      : fill;
  return out;
}

std::vector<double> permute_ref(const Tensor& x, const std::vector<int>& perm) {
  Shape out_shape(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) out_shape[i] = x.size(perm[i]);
  return gather_ref(x, out_shape, [&](const Index& o, Index& in) {
    for (size_t i = 0; i < perm.size(); ++i) in[perm[i]] = o[i];
    return true;
  });
}

int64_t wrap(int64_t i, int64_t n) { return ((i % n) + n) % n; }

}  // namespace

TEST_CASE("permute matches an index loop for every order of rank 2 to 5") {
  Generator gen(1);
  // Odd sizes and a size-1 dim so that dim merging and both kernel paths run.
  const Shape shapes[] = {{5, 3}, {4, 1, 3}, {2, 3, 4, 5}, {3, 2, 1, 4, 3}};
  for (const Shape& shape : shapes) {
    Tensor x = gen.uniform_tensor(shape, -1.0f, 1.0f);
    std::vector<int> perm(shape.size());
    std::iota(perm.begin(), perm.end(), 0);
    do {
      CAPTURE(shape_str(shape));
      CAPTURE(shape_str(Shape(perm.begin(), perm.end())));
      expect_close(permute(x, perm), permute_ref(x, perm), 0.0, 0.0, "permute");
    } while (std::next_permutation(perm.begin(), perm.end()));
  }
}

TEST_CASE("permute on shapes large enough for the parallel and tiled paths") {
  Generator gen(2);
  struct Case {
    Shape shape;
    std::vector<int> perm;
  };
  const Case cases[] = {
      {{4, 70, 130}, {0, 2, 1}},             // batched transpose, partial tiles
      {{2, 3, 45, 37}, {0, 1, 3, 2}},        // attention k^T
      {{4, 49, 3, 6, 16}, {2, 0, 3, 1, 4}},  // qkv split: last dim kept
      {{130, 257}, {1, 0}},                  // plain transpose
      {{6, 35, 4, 9, 7}, {4, 1, 3, 0, 2}},   // tiled, dims between the transposed pair
      {{1, 40000}, {1, 0}},                  // only a size-1 dim moves: a plain copy
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.shape));
    Tensor x = gen.uniform_tensor(c.shape, -1.0f, 1.0f);
    expect_close(permute(x, c.perm), permute_ref(x, c.perm), 0.0, 0.0, "permute");
  }
}

TEST_CASE("permute: identity returns the input, bad orders throw, backward") {
  Generator gen(3);
  Tensor x = random_input({2, 3, 4}, gen);
  CHECK(permute(x, {0, 1, 2}).impl() == x.impl());
  CHECK(permute(x, {-3, 2, -2}).shape() == Shape{2, 4, 3});
  CHECK_THROWS_AS(permute(x, {0, 1}), std::invalid_argument);
  CHECK_THROWS_AS(permute(x, {0, 1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(permute(x, {0, 1, 3}), std::invalid_argument);
  expect_gradients([](auto& in) { return permute(in[0], {2, 0, 1}); }, {x});
  Tensor y = random_input({2, 3, 1, 4, 3}, gen);
  expect_gradients([](auto& in) { return permute(in[0], {3, 1, 4, 0, 2}); }, {y});
  Tensor z = random_input({5, 7}, gen);
  expect_gradients([](auto& in) { return permute(in[0], {1, 0}); }, {z});
}

TEST_CASE("permute: Swin window partition") {
  // [B, H, W, C] -> [B, H/w, w, W/w, w, C] -> [B, H/w, W/w, w, w, C]
  Generator gen(4);
  const int64_t B = 2, H = 6, W = 9, C = 4, w = 3;
  Tensor x = random_input({B, H, W, C}, gen);
  Tensor windows = permute(reshape(x, {B, H / w, w, W / w, w, C}), {0, 1, 3, 2, 4, 5});
  REQUIRE(windows.shape() == Shape{B, H / w, W / w, w, w, C});
  std::vector<float> v = x.to_vector();
  std::vector<double> ref;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t wh = 0; wh < H / w; ++wh)
      for (int64_t ww = 0; ww < W / w; ++ww)
        for (int64_t i = 0; i < w; ++i)
          for (int64_t j = 0; j < w; ++j)
            for (int64_t c = 0; c < C; ++c)
              ref.push_back(v[((b * H + wh * w + i) * W + ww * w + j) * C + c]);
  expect_close(windows, ref, 0.0, 0.0, "window partition");
  expect_gradients(
      [&](auto& in) {
        return permute(reshape(in[0], {B, H / w, w, W / w, w, C}), {0, 1, 3, 2, 4, 5});
      },
      {x});
}

TEST_CASE("transpose swaps two dims") {
  Generator gen(5);
  Tensor x = random_input({2, 3, 5}, gen);
  expect_close(transpose(x, 0, 2), permute_ref(x, {2, 1, 0}), 0.0, 0.0, "transpose 0 2");
  expect_close(transpose(x, -1, -2), permute_ref(x, {0, 2, 1}), 0.0, 0.0, "transpose -1 -2");
  CHECK(transpose(x, 1, 1).impl() == x.impl());
  CHECK_THROWS_AS(transpose(x, 0, 3), std::invalid_argument);
  expect_gradients([](auto& in) { return transpose(in[0], 1, 2); }, {x});
}

TEST_CASE("concat of three tensors along dims 0, 1 and last") {
  Generator gen(6);
  const Shape base{3, 4, 5};
  for (int64_t dim : {0, 1, 2, -1}) {
    CAPTURE(dim);
    const int64_t d = dim < 0 ? dim + 3 : dim;
    std::vector<Tensor> xs;
    std::vector<int64_t> starts;
    int64_t total = 0;
    for (int64_t len : {2, 1, 3}) {
      Shape s = base;
      s[d] = len;
      xs.push_back(random_input(s, gen));
      starts.push_back(total);
      total += len;
    }
    Tensor out = concat(xs, dim);
    Shape out_shape = base;
    out_shape[d] = total;
    REQUIRE(out.shape() == out_shape);
    std::vector<double> ref(out.numel());
    for (int64_t i = 0; i < out.numel(); ++i) {
      Index o = unravel(i, out_shape);
      size_t k = 0;
      while (k + 1 < xs.size() && o[d] >= starts[k + 1]) ++k;
      o[d] -= starts[k];
      ref[i] = xs[k].to_vector()[ravel(o, xs[k].shape())];
    }
    expect_close(out, ref, 0.0, 0.0, "concat");
    expect_gradients([dim](auto& in) { return concat(in, dim); }, xs);
  }
}

TEST_CASE("concat: only some inputs need gradients, mismatched shapes throw") {
  Generator gen(7);
  Tensor a = random_input({2, 3}, gen);
  Tensor b = gen.uniform_tensor({2, 4}, -1.0f, 1.0f);  // constant
  expect_gradients([](auto& in) { return concat(in, 1); }, {a, b});
  CHECK_THROWS_AS(concat({a, b}, 0), std::invalid_argument);
  CHECK_THROWS_AS(concat({a, reshape(a, {6})}, 0), std::invalid_argument);
  CHECK_THROWS_AS(concat({}, 0), std::invalid_argument);
  CHECK_THROWS_AS(concat({a, b}, 2), std::invalid_argument);
  // Large enough to take the parallel copy.
  Tensor big0 = gen.uniform_tensor({300, 130}, -1.0f, 1.0f);
  Tensor big1 = gen.uniform_tensor({300, 70}, -1.0f, 1.0f);
  Tensor out = concat({big0, big1}, 1);
  std::vector<float> v0 = big0.to_vector(), v1 = big1.to_vector();
  std::vector<double> ref;
  for (int64_t r = 0; r < 300; ++r) {
    ref.insert(ref.end(), v0.begin() + r * 130, v0.begin() + (r + 1) * 130);
    ref.insert(ref.end(), v1.begin() + r * 70, v1.begin() + (r + 1) * 70);
  }
  expect_close(out, ref, 0.0, 0.0, "large concat");
}

TEST_CASE("narrow copies a range and scatters the gradient back") {
  Generator gen(8);
  Tensor x = random_input({4, 7, 3}, gen);
  for (int64_t dim : {0, 1, -1}) {
    CAPTURE(dim);
    const int64_t d = dim < 0 ? dim + 3 : dim;
    const int64_t start = 1, len = x.size(d) - 2;
    Shape out_shape = x.shape();
    out_shape[d] = len;
    std::vector<double> ref = gather_ref(x, out_shape, [&](const Index& o, Index& in) {
      in = o;
      in[d] += start;
      return true;
    });
    expect_close(narrow(x, dim, start, len), ref, 0.0, 0.0, "narrow");
    expect_gradients([&](auto& in) { return narrow(in[0], dim, start, len); }, {x});
  }
  CHECK(narrow(x, 1, 0, 7).impl() == x.impl());
  CHECK(narrow(x, 1, 3, 0).numel() == 0);
  CHECK_THROWS_AS(narrow(x, 1, 5, 3), std::invalid_argument);
  CHECK_THROWS_AS(narrow(x, 1, -1, 2), std::invalid_argument);
  CHECK_THROWS_AS(narrow(x, 3, 0, 1), std::invalid_argument);
}

TEST_CASE("roll: negative, oversized and multi-dim shifts") {
  Generator gen(9);
  Tensor x = random_input({3, 5, 4}, gen);
  struct Case {
    std::vector<int64_t> shifts, dims;
  };
  const Case cases[] = {
      {{2}, {1}},   {{-1}, {1}},  {{13}, {1}},  {{-7}, {-1}}, {{1, -2}, {0, 2}},
      {{5}, {1}},   // a full turn: identity
      {{2, 1}, {1, 1}},  // a dim named twice rolls by the sum
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.shifts));
    CAPTURE(shape_str(c.dims));
    Index net(3, 0);
    for (size_t i = 0; i < c.dims.size(); ++i) net[wrap(c.dims[i], 3)] += c.shifts[i];
    std::vector<double> ref = gather_ref(x, x.shape(), [&](const Index& o, Index& in) {
      for (int d = 0; d < 3; ++d) in[d] = wrap(o[d] - net[d], x.size(d));
      return true;
    });
    expect_close(roll(x, c.shifts, c.dims), ref, 0.0, 0.0, "roll");
    expect_gradients([&](auto& in) { return roll(in[0], c.shifts, c.dims); }, {x});
  }
  // Without dims the flattened tensor rolls, as torch.roll.
  std::vector<float> v = x.to_vector();
  std::vector<double> flat(v.size());
  for (size_t i = 0; i < v.size(); ++i) flat[(i + 4) % v.size()] = v[i];
  expect_close(roll(x, {4}, {}), flat, 0.0, 0.0, "flattened roll");
  expect_gradients([](auto& in) { return roll(in[0], {-3}, {}); }, {x});
  CHECK_THROWS_AS(roll(x, {1, 2}, {0}), std::invalid_argument);
  CHECK_THROWS_AS(roll(x, {1}, {3}), std::invalid_argument);
}

TEST_CASE("roll: Swin cyclic shift and its reverse") {
  Generator gen(10);
  const int64_t B = 2, H = 7, W = 6, C = 5, shift = 3;
  Tensor x = random_input({B, H, W, C}, gen);
  Tensor shifted = roll(x, {-shift, -shift}, {1, 2});
  std::vector<double> ref = gather_ref(x, x.shape(), [&](const Index& o, Index& in) {
    in = o;
    in[1] = (o[1] + shift) % H;
    in[2] = (o[2] + shift) % W;
    return true;
  });
  expect_close(shifted, ref, 0.0, 0.0, "cyclic shift");
  expect_close(roll(shifted, {shift, shift}, {1, 2}), x, 0.0, 0.0, "reverse shift");
  expect_gradients([&](auto& in) { return roll(in[0], {-shift, -shift}, {1, 2}); }, {x});
  // Large enough to take the parallel copy.
  Tensor big = gen.uniform_tensor({2, 56, 56, 24}, -1.0f, 1.0f);
  std::vector<double> big_ref = gather_ref(big, big.shape(), [&](const Index& o, Index& in) {
    in = o;
    in[1] = (o[1] + 3) % 56;
    in[2] = (o[2] + 3) % 56;
    return true;
  });
  expect_close(roll(big, {-3, -3}, {1, 2}), big_ref, 0.0, 0.0, "large cyclic shift");
}

TEST_CASE("index_select picks slices, repeated indices accumulate gradients") {
  Generator gen(11);
  Tensor x = random_input({3, 4, 5}, gen);
  const std::vector<int64_t> picks{2, 0, 2, 3, 2};
  Tensor index = Tensor::from_int64(picks, {5});
  for (int64_t dim : {0, 1, -1}) {
    CAPTURE(dim);
    const int64_t d = dim < 0 ? dim + 3 : dim;
    std::vector<int64_t> p(picks);
    for (int64_t& i : p) i = std::min(i, x.size(d) - 1);
    Tensor idx = Tensor::from_int64(p, {5});
    Shape out_shape = x.shape();
    out_shape[d] = 5;
    std::vector<double> ref = gather_ref(x, out_shape, [&](const Index& o, Index& in) {
      in = o;
      in[d] = p[o[d]];
      return true;
    });
    expect_close(index_select(x, dim, idx), ref, 0.0, 0.0, "index_select");
    expect_gradients([&](auto& in) { return index_select(in[0], dim, idx); }, {x});
  }
  // Row 2 of dim 1 is picked three times: its gradient is three times the
  // upstream one; row 1 is never picked and gets zeros.
  x.zero_grad();
  index_select(x, 1, index).backward(Tensor::ones({3, 5, 5}));
  std::vector<float> g = x.grad().to_vector();
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t row = unravel(i, x.shape())[1];
    CHECK(g[i] == (row == 2 ? 3.0f : row == 1 ? 0.0f : 1.0f));
  }
  // The relative position bias gather of a 7x7 Swin window: 2401 picks from
  // a [169, heads] table, large enough for the parallel paths.
  Tensor table = random_input({169, 64}, gen);
  std::vector<int64_t> rel(2401);
  for (size_t i = 0; i < rel.size(); ++i) rel[i] = static_cast<int64_t>((i * 37) % 169);
  Tensor rel_index = Tensor::from_int64(rel, {2401});
  Tensor bias = index_select(table, 0, rel_index);
  std::vector<double> ref = gather_ref(table, {2401, 64}, [&](const Index& o, Index& in) {
    in = {rel[o[0]], o[1]};
    return true;
  });
  expect_close(bias, ref, 0.0, 0.0, "bias gather");
  Tensor up = gen.uniform_tensor({2401, 64}, -1.0f, 1.0f);
  bias.backward(up);
  std::vector<double> dref(169 * 64, 0.0);
  std::vector<float> u = up.to_vector();
  for (int64_t j = 0; j < 2401; ++j)
    for (int64_t c = 0; c < 64; ++c) dref[rel[j] * 64 + c] += u[j * 64 + c];
  expect_close(table.grad(), dref, 1e-5, 1e-5, "bias gather backward");
}

TEST_CASE("index_select rejects bad indices") {
  Tensor x = Tensor::zeros({3, 4});
  CHECK_THROWS_AS(index_select(x, 0, Tensor::from_int64({0, 3}, {2})), std::invalid_argument);
  CHECK_THROWS_AS(index_select(x, 1, Tensor::from_int64({-1}, {1})), std::invalid_argument);
  CHECK_THROWS_AS(index_select(x, 0, Tensor::from_vector({0.0f}, {1})), std::invalid_argument);
  CHECK_THROWS_AS(index_select(x, 0, Tensor::from_int64({0, 1}, {1, 2})), std::invalid_argument);
  CHECK_THROWS_AS(index_select(x, 2, Tensor::from_int64({0}, {1})), std::invalid_argument);
  CHECK(index_select(x, 1, Tensor::from_int64({3}, {1})).shape() == Shape{3, 1});
}

TEST_CASE("pad: last one and two dims, asymmetric, constant value") {
  Generator gen(12);
  Tensor x = random_input({2, 3, 4}, gen);
  const std::vector<std::vector<int64_t>> cases = {
      {1, 2},              // last dim
      {0, 3},              // after only
      {2, 0, 1, 3},        // last two dims
      {0, 0, 0, 1, 2, 0},  // all three, the last one untouched
      {0, 0},              // nothing
  };
  for (const auto& pads : cases) {
    CAPTURE(shape_str(pads));
    Shape out_shape = x.shape();
    Index before(3, 0);
    for (size_t i = 0; i < pads.size() / 2; ++i) {
      before[2 - i] = pads[2 * i];
      out_shape[2 - i] += pads[2 * i] + pads[2 * i + 1];
    }
    auto inside = [&](const Index& o, Index& in) {
      for (int d = 0; d < 3; ++d) {
        in[d] = o[d] - before[d];
        if (in[d] < 0 || in[d] >= x.size(d)) return false;
      }
      return true;
    };
    expect_close(pad(x, pads, -0.5f), gather_ref(x, out_shape, inside, -0.5), 0.0, 0.0, "pad");
    expect_gradients([&](auto& in) { return pad(in[0], pads, 0.25f); }, {x});
  }
  CHECK_THROWS_AS(pad(x, {1}), std::invalid_argument);
  CHECK_THROWS_AS(pad(x, {-1, 0}), std::invalid_argument);
  CHECK_THROWS_AS(pad(x, {1, 1, 1, 1, 1, 1, 1, 1}), std::invalid_argument);
}

TEST_CASE("reshape and slice_rows are views that pass gradients") {
  Generator gen(13);
  Tensor x = random_input({4, 3, 5}, gen);
  Tensor r = reshape(x, {-1, 5});
  CHECK(r.shape() == Shape{12, 5});
  CHECK(r.data() == x.data());
  CHECK(reshape(x, {2, -1, 3}).shape() == Shape{2, 10, 3});
  CHECK(flatten(x).shape() == Shape{4, 15});
  CHECK_THROWS_AS(reshape(x, {-1, -1}), std::invalid_argument);
  CHECK_THROWS_AS(reshape(x, {7, -1}), std::invalid_argument);
  CHECK_THROWS_AS(reshape(x, {4, 4}), std::invalid_argument);
  expect_gradients([](auto& in) { return reshape(in[0], {3, -1}); }, {x});

  Tensor s = slice_rows(x, 1, 2);
  CHECK(s.shape() == Shape{2, 3, 5});
  CHECK(s.data() == x.data() + 15);
  x.data()[20] = 42.0f;  // writes through the shared storage
  CHECK(s.to_vector()[5] == 42.0f);
  CHECK(slice_rows(x, 4, 0).numel() == 0);
  CHECK_THROWS_AS(slice_rows(x, 3, 2), std::invalid_argument);
  expect_gradients([](auto& in) { return slice_rows(in[0], 1, 2); }, {x});
  // A chain of views: gradients reach the leaf through both.
  expect_gradients([](auto& in) { return reshape(slice_rows(in[0], 2, 2), {-1}); }, {x});
}
