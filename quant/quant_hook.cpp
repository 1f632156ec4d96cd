#include "quant/quant_hook.h"

#include "engine/parallel.h"
#include "quant/shard_params.h"

namespace pk {

QuantHook::QuantHook(const HookedLayer& layer, const QuantSettings& settings,
                     bool has_input_quantizer)
    : weight_bits(settings.weight_bits), activation_bits(settings.activation_bits),
      settings_(settings) {
  int operands = layer.kind() == LayerKind::MatMul ? 2 : 1;
  // Per-channel activations: channels are axis 1 of a conv's NCHW input and
  // the last axis of token tensors and matmul operands.
  int64_t axis = layer.kind() == LayerKind::Conv ? 1 : -1;
  for (int i = 0; i < operands; ++i) {
    if (i == 0 && !has_input_quantizer) {
      operand_quantizers.push_back(nullptr);
    } else {
      operand_quantizers.push_back(std::make_unique<UniformQuantizer>(
          settings.activation_bits, settings.activation_channel_wise, axis));
    }
  }
  operand_numel.assign(operands, 0);
  if (layer.kind() != LayerKind::MatMul) {
    weight_quantizer = std::make_unique<WeightQuantizer>(settings.weight_bits,
                                                         settings.weight_channel_wise);
    for (const auto& [name, t] : layer.named_parameters())
      if (name == "weight") layer_weight = t;
    weight_numel = layer_weight.numel();
  }
}

Tensor QuantHook::operand(int index, const Tensor& x) {
  // Batch shards on worker threads see the sizes that full batches recorded
  // (and would write them from several threads at once).
  if (!in_parallel_region() && x.dim() > 0 && x.size(0) > 0)
    operand_numel[index] = x.numel() / x.size(0);
  if (capturing && index == 0) captured.push_back(x.detach());
  UniformQuantizer* q = operand_quantizers[index].get();
  if (!activation_on || !q) return x;
  if (initializing && !q->initialized()) q->init(x, settings_.activation_init);
  return q->forward(x);
}

Tensor QuantHook::weight(const Tensor& w) {
  if (!weight_on || !weight_quantizer) return w;
  if (const Tensor* copy = shard_copy(this)) return *copy;
  if (initializing && !weight_quantizer->initialized())
    weight_quantizer->init(w, settings_.weight_init);
  return weight_quantizer->forward(w);
}

void QuantHook::set_bits(int w_bits, int a_bits) {
  weight_bits = w_bits;
  activation_bits = a_bits;
  if (weight_quantizer) weight_quantizer->bits = w_bits;
  for (auto& q : operand_quantizers)
    if (q) q->bits = a_bits;
  reset();
}

void QuantHook::reset() {
  if (weight_quantizer) {
    weight_quantizer->reset();
    weight_quantizer->rounding = Rounding::Nearest;
    weight_quantizer->alpha = Tensor();
  }
  for (auto& q : operand_quantizers)
    if (q) q->reset();
}

}  // namespace pk
