#include "nets/attention.h"

#include <cmath>
#include <string>

namespace pk {

Mlp::Mlp(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim));
}

Tensor Mlp::forward(const Tensor& x) const { return fc2->forward(gelu(fc1->forward(x))); }

Attention::Attention(int64_t dim, int64_t heads, bool qkv_bias, ScaleAt at)
    : num_heads(heads), head_dim(dim / heads), scale_at(at) {
  check(heads > 0 && dim % heads == 0, [&] {
    return "Attention: dim " + std::to_string(dim) + " is not divisible by num_heads " +
           std::to_string(heads);
  });
  // As Python's `head_dim ** -0.5`: computed in double, applied as float32.
  scale = static_cast<float>(std::pow(static_cast<double>(head_dim), -0.5));
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, qkv_bias));
  matmul1 = register_module("matmul1", std::make_shared<MatMul>());
  matmul2 = register_module("matmul2", std::make_shared<MatMul>());
  proj = register_module("proj", std::make_shared<Linear>(dim, dim));
}

Tensor Attention::forward(const Tensor& x,
                          const std::function<Tensor(const Tensor&)>& adjust_scores) const {
  check(x.dim() == 3, [&] { return "Attention: expects tokens [B, N, C], got " + x.describe(); });
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  // [B, N, 3C] -> [3, B, heads, N, head_dim]; q, k, v are its three rows.
  Tensor qkv_heads =
      permute(reshape(qkv->forward(x), {B, N, 3, num_heads, head_dim}), {2, 0, 3, 1, 4});
  const Shape head_shape = {B, num_heads, N, head_dim};
  Tensor q = reshape(slice_rows(qkv_heads, 0, 1), head_shape);
  Tensor k = reshape(slice_rows(qkv_heads, 1, 1), head_shape);
  Tensor v = reshape(slice_rows(qkv_heads, 2, 1), head_shape);

  Tensor scores;
  if (scale_at == ScaleAt::Query) {
    scores = matmul1->forward(mul(q, scale), transpose(k, -2, -1));
  } else {
    scores = mul(matmul1->forward(q, transpose(k, -2, -1)), scale);
  }
  if (adjust_scores) scores = adjust_scores(scores);
  Tensor out = matmul2->forward(softmax(scores), v);  // [B, heads, N, head_dim]
  return proj->forward(reshape(transpose(out, 1, 2), {B, N, C}));
}

}  // namespace pk
