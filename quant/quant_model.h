// A network with a QuantHook on every quantizable layer, grouped by unit.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nets/net.h"
#include "quant/quant_hook.h"

namespace pk {

struct QuantLayer {
  std::string name;
  HookedLayer* layer;
  std::shared_ptr<QuantHook> hook;
  int64_t unit;
};

class QuantModel {
 public:
  // first_last_8bit pins the first and the last quantized layer to 8 bits.
  QuantModel(std::shared_ptr<Net> net, const QuantSettings& settings, bool first_last_8bit);

  Net& net() { return *net_; }
  const std::shared_ptr<Net>& net_ptr() const { return net_; }
  std::vector<QuantLayer>& layers() { return layers_; }
  const QuantSettings& settings() const { return settings_; }
  // Indices into layers() of unit t's layers.
  const std::vector<size_t>& unit_layers(int64_t t) const { return unit_layers_[t]; }

  void set_quant(bool weights, bool activations);  // every layer
  void set_unit_quant(int64_t t, bool weights, bool activations);
  void set_unit_bits(int64_t t, int bits);          // weights and activations; resets
  // Resets every quantizer and initializes all of them from one batch with
  // the whole model quantized (each range measured behind quantized layers),
  // leaving the whole model quantized with nearest rounding.
  void initialize(const Tensor& batch);
  // Cost of a layer for mixed precision: weight elements plus one sample's
  // operand elements (docs/METHOD.md section 5). Valid after initialize().
  int64_t layer_cost(size_t layer) const;
  int64_t unit_cost(int64_t t) const;

  // Moves the net and every initialized quantizer to `device`.
  void to(Device device);
  // Bits per element over every quantized layer's weight and one sample's
  // operands, weighted as mixed precision weighs them (layer_cost).
  double average_bits() const;
  // Weight and activation bits of unit t's first quantized layer (a pack's
  // layers share them); {0, 0} for a unit without one.
  std::pair<int, int> unit_bits(int64_t t) const;

 private:
  std::shared_ptr<Net> net_;
  QuantSettings settings_;
  std::vector<QuantLayer> layers_;
  std::vector<std::vector<size_t>> unit_layers_;
};

}  // namespace pk
