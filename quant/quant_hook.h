// The quantized layer (ALGORITHM.md section 2): a LayerHook that puts a
// weight quantizer on a Conv/Linear weight and an activation quantizer on
// each operand, with on/off switches the pipeline flips per layer and unit.
#pragma once

#include <memory>
#include <vector>

#include "nets/layers.h"
#include "quant/quantizer.h"

namespace pk {

struct QuantSettings {
  int weight_bits = 3, activation_bits = 3;
  bool weight_channel_wise = false, activation_channel_wise = false;
  InitMethod weight_init = InitMethod::Mse, activation_init = InitMethod::Mse;
};

class QuantHook : public LayerHook {
 public:
  // has_input_quantizer: false for the network's first conv (the image is not
  // quantized).
  QuantHook(const HookedLayer& layer, const QuantSettings& settings, bool has_input_quantizer);

  Tensor operand(int index, const Tensor& x) override;
  Tensor weight(const Tensor& w) override;

  // Bits of weights and activations; un-initializes the quantizers.
  void set_bits(int weight_bits, int activation_bits);
  void reset();

  bool weight_on = false, activation_on = false;
  // While set, quantizers that are not initialized yet initialize from the
  // first tensor they see.
  bool initializing = false;
  // While set, operand 0 as it arrives (before quantization) is appended to
  // `captured` (layer-wise reconstruction captures layer inputs).
  bool capturing = false;
  std::vector<Tensor> captured;

  std::unique_ptr<WeightQuantizer> weight_quantizer;                  // Conv/Linear
  std::vector<std::unique_ptr<UniformQuantizer>> operand_quantizers;  // null: none
  std::vector<int64_t> operand_numel;  // one sample's element count per operand
  Tensor layer_weight;  // the Conv/Linear weight (undefined for MatMul)
  int64_t weight_numel = 0;
  int weight_bits, activation_bits;

 private:
  QuantSettings settings_;
};

}  // namespace pk
