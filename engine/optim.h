// Optimizers (Adam, SGD with momentum) and the cosine-annealing schedule,
// with PyTorch's update rules so that reference hyper-parameters carry over.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace pk {

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, float lr);
  virtual ~Optimizer() = default;
  virtual void step() = 0;  // parameters without a gradient are skipped
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  const std::vector<Tensor>& params() const { return params_; }

 protected:
  std::vector<Tensor> params_;
  float lr_;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, float lr, float beta1 = 0.9f, float beta2 = 0.999f,
       float eps = 1e-8f, float weight_decay = 0.0f);
  void step() override;

 private:
  float beta1_, beta2_, eps_, weight_decay_;
  std::vector<Tensor> m_, v_;
  std::vector<int64_t> steps_;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, float lr, float momentum = 0.0f, float weight_decay = 0.0f);
  void step() override;

 private:
  float momentum_, weight_decay_;
  std::vector<Tensor> buffers_;
  std::vector<bool> started_;
};

// torch.optim.lr_scheduler.CosineAnnealingLR in closed form:
// lr(t) = eta_min + (base - eta_min) * (1 + cos(pi * t / t_max)) / 2.
class CosineSchedule {
 public:
  CosineSchedule(Optimizer& optimizer, int64_t t_max, float eta_min = 0.0f);
  void step();  // advance t by one and set the optimizer's lr
  int64_t t() const { return t_; }

 private:
  Optimizer& optimizer_;
  float base_lr_, eta_min_;
  int64_t t_max_, t_ = 0;
};

}  // namespace pk
