// Transformer parts shared by ViT/DeiT (nets/vit.cpp) and Swin (nets/swin.cpp),
// with timm 1.0.9's module names so that checkpoint keys map 1:1.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "engine/module.h"
#include "nets/layers.h"

namespace pk {

// A Module that only holds numbered children ("blocks.0", "blocks.1", ...),
// like torch's nn.Sequential/ModuleList as a name prefix.
class ModuleList : public Module {
 public:
  template <class M>
  std::shared_ptr<M> append(std::shared_ptr<M> module) {
    return register_module(std::to_string(count_++), std::move(module));
  }

 private:
  int64_t count_ = 0;
};

// timm Mlp: fc1 -> exact GELU -> fc2 (dropout is identity: eval and reconstruction).
class Mlp : public Module {
 public:
  Mlp(int64_t dim, int64_t hidden);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Linear> fc1, fc2;
};

// Multi-head self-attention over x [B, N, dim] with quantizable layers qkv,
// matmul1 (q @ k^T), matmul2 (attn @ v) and proj, registered in that order.
//
// Where the softmax scale goes differs between the two families
// (docs/METHOD.md section 2): ViT multiplies the scores q @ k^T, Swin
// multiplies q before the product. `adjust_scores`, when given, maps the
// scaled scores [B, heads, N, N] to the softmax input (Swin adds its relative
// position bias and shift mask there).
class Attention : public Module {
 public:
  enum class ScaleAt { Scores, Query };
  Attention(int64_t dim, int64_t num_heads, bool qkv_bias, ScaleAt scale_at);
  Tensor forward(const Tensor& x,
                 const std::function<Tensor(const Tensor&)>& adjust_scores = nullptr) const;

  std::shared_ptr<Linear> qkv;
  std::shared_ptr<MatMul> matmul1, matmul2;
  std::shared_ptr<Linear> proj;
  int64_t num_heads, head_dim;
  float scale;  // head_dim^-0.5
  ScaleAt scale_at;
};

}  // namespace pk
