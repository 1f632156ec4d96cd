#include "quant/quant_model.h"

#include <map>

#include "engine/autograd.h"

namespace pk {

QuantModel::QuantModel(std::shared_ptr<Net> net, const QuantSettings& settings,
                       bool first_last_8bit)
    : net_(std::move(net)), settings_(settings) {
  std::map<std::string, int64_t> unit_of;
  for (int64_t t = 0; t < net_->num_units(); ++t)
    for (const auto& name : net_->units()[t].layers) unit_of[name] = t;
  auto quantizable = net_->quantizable_layers();
  unit_layers_.resize(net_->num_units());
  for (size_t i = 0; i < quantizable.size(); ++i) {
    const auto& [name, layer] = quantizable[i];
    auto it = unit_of.find(name);
    check(it != unit_of.end(), [&, &name = name] {
      return "layer " + name + " belongs to no unit of " + net_->model_name();
    });
    auto hook = std::make_shared<QuantHook>(*layer, settings, /*has_input_quantizer=*/i != 0);
    layer->set_hook(hook);
    unit_layers_[it->second].push_back(layers_.size());
    layers_.push_back({name, layer, hook, it->second});
  }
  if (first_last_8bit && !layers_.empty()) {
    layers_.front().hook->set_bits(8, 8);
    layers_.back().hook->set_bits(8, 8);
  }
}

void QuantModel::set_quant(bool weights, bool activations) {
  for (auto& l : layers_) l.hook->set_quant(weights, activations);
}

void QuantModel::set_unit_quant(int64_t t, bool weights, bool activations) {
  for (size_t i : unit_layers_[t]) layers_[i].hook->set_quant(weights, activations);
}

void QuantModel::set_unit_bits(int64_t t, int bits) {
  for (size_t i : unit_layers_[t]) layers_[i].hook->set_bits(bits, bits);
}

void QuantModel::initialize(const Tensor& batch) {
  NoGradGuard guard;
  for (auto& l : layers_) {
    l.hook->reset();
    l.hook->begin_initialization();
  }
  net_->forward(batch);
  for (auto& l : layers_) l.hook->end_initialization();
}

int64_t QuantModel::layer_cost(size_t i) const {
  const QuantHook& h = *layers_[i].hook;
  int64_t cost = h.weight_numel;
  for (int64_t n : h.operand_numel) cost += n;
  return cost;
}

int64_t QuantModel::unit_cost(int64_t t) const {
  int64_t cost = 0;
  for (size_t i : unit_layers_[t]) cost += layer_cost(i);
  return cost;
}

void QuantModel::to(Device device) {
  net_->to(device);
  auto move = [device](UniformQuantizer& q) {
    if (!q.initialized()) return;
    q.scale = q.scale.to(device);
    q.zero_point = q.zero_point.to(device);
  };
  for (QuantLayer& layer : layers_) {
    if (layer.hook->weight_quantizer) move(*layer.hook->weight_quantizer);
    for (auto& q : layer.hook->operand_quantizers)
      if (q) move(*q);
  }
}

double QuantModel::average_bits() const {
  double bits = 0, elements = 0;
  for (const QuantLayer& layer : layers_) {
    const QuantHook& h = *layer.hook;
    bits += static_cast<double>(h.weight_numel) * h.weight_bits;
    for (int64_t n : h.operand_numel) bits += static_cast<double>(n) * h.activation_bits;
    elements += static_cast<double>(h.weight_numel);
    for (int64_t n : h.operand_numel) elements += static_cast<double>(n);
  }
  return elements > 0 ? bits / elements : 0.0;
}

std::pair<int, int> QuantModel::unit_bits(int64_t t) const {
  if (unit_layers_[t].empty()) return {0, 0};
  const QuantHook& first = *layers_[unit_layers_[t].front()].hook;
  return {first.weight_bits, first.activation_bits};
}

}  // namespace pk
