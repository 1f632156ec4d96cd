#include "engine/optim.h"

#include <cmath>

namespace pk {

Optimizer::Optimizer(std::vector<Tensor> params, float lr) : params_(std::move(params)), lr_(lr) {
  for (const Tensor& p : params_)
    check(p.defined() && p.dtype() == DType::F32, "optimizer: parameters must be float tensors");
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

Adam::Adam(std::vector<Tensor> params, float lr, float beta1, float beta2, float eps,
           float weight_decay)
    : Optimizer(std::move(params), lr), beta1_(beta1), beta2_(beta2), eps_(eps),
      weight_decay_(weight_decay), steps_(params_.size(), 0) {
  for (const Tensor& p : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.device()));
  }
}

void Adam::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    backend(params_[i].device()).adam_update(params_[i].numel(), params_[i].data(), g.data(),
                                             m_[i].data(), v_[i].data(), lr_, beta1_, beta2_,
                                             eps_, weight_decay_, ++steps_[i]);
  }
}

SGD::SGD(std::vector<Tensor> params, float lr, float momentum, float weight_decay)
    : Optimizer(std::move(params), lr), momentum_(momentum), weight_decay_(weight_decay),
      started_(params_.size(), false) {
  for (const Tensor& p : params_) buffers_.push_back(Tensor::zeros(p.shape(), p.device()));
}

void SGD::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    backend(params_[i].device()).sgd_update(params_[i].numel(), params_[i].data(), g.data(),
                                            buffers_[i].data(), lr_, momentum_, weight_decay_,
                                            !started_[i]);
    started_[i] = true;
  }
}

CosineSchedule::CosineSchedule(Optimizer& optimizer, int64_t t_max, float eta_min)
    : optimizer_(optimizer), base_lr_(optimizer.lr()), eta_min_(eta_min), t_max_(t_max) {
  check(t_max > 0, "cosine schedule: t_max must be positive");
}

void CosineSchedule::step() {
  ++t_;
  double cosine = (1.0 + std::cos(M_PI * static_cast<double>(t_) / static_cast<double>(t_max_))) / 2.0;
  optimizer_.set_lr(static_cast<float>(eta_min_ + (base_lr_ - eta_min_) * cosine));
}

}  // namespace pk
