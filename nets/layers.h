// Building blocks of the networks. Conv2d, Linear and MatMul are the
// quantizable layers: each has an optional hook that may replace its operands
// (activation quantizers) and its weight (weight quantizer) before the plain
// op runs. Nets know nothing else about quantization.
#pragma once

#include <memory>
#include <string>

#include "engine/module.h"
#include "engine/ops.h"

namespace pk {

enum class LayerKind { Conv, Linear, MatMul };

// Replaces a layer's inputs before it computes. operand(i, x) transforms
// operand i (0 = the input of Conv/Linear; 0 and 1 = the two MatMul
// operands), weight(w) the weight of Conv/Linear. output(y) sees the layer's
// result (error analysis compares layer outputs); by default it does nothing.
class LayerHook {
 public:
  virtual ~LayerHook() = default;
  virtual Tensor operand(int index, const Tensor& x) = 0;
  virtual Tensor weight(const Tensor& w) = 0;
  virtual void output(const Tensor& /*y*/) {}
};

class HookedLayer : public Module {
 public:
  explicit HookedLayer(LayerKind kind) : kind_(kind) {}
  LayerKind kind() const { return kind_; }
  void set_hook(std::shared_ptr<LayerHook> hook) { hook_ = std::move(hook); }
  LayerHook* hook() const { return hook_.get(); }

 protected:
  Tensor apply_operand(int index, const Tensor& x) const {
    return hook_ ? hook_->operand(index, x) : x;
  }
  Tensor apply_weight(const Tensor& w) const { return hook_ ? hook_->weight(w) : w; }
  Tensor report_output(Tensor y) const {
    if (hook_) hook_->output(y);
    return y;
  }

 private:
  LayerKind kind_;
  std::shared_ptr<LayerHook> hook_;
};

class Conv2d : public HookedLayer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1,
         int64_t padding = 0, int64_t groups = 1, bool bias = true, int64_t dilation = 1);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;  // bias undefined when absent
  Conv2dOptions options;
};

class Linear : public HookedLayer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
};

// a @ b with both operands hookable (attention's q @ k^T and attn @ v).
class MatMul : public HookedLayer {
 public:
  MatMul() : HookedLayer(LayerKind::MatMul) {}
  Tensor forward(const Tensor& a, const Tensor& b) const;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  float eps, momentum;
  bool folded = false;  // merged into the preceding conv (fold_bn.h): identity
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  float eps;
};

}  // namespace pk
