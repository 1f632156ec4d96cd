#include "quant/quant_hook.h"

#include <utility>

#include "engine/parallel.h"

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
  if (capturing_ && index == 0) captured_.push_back(x.detach());
  UniformQuantizer* q = operand_quantizers[index].get();
  if (!activations_quantized() || !q) return x;
  if (mode_ == QuantMode::Initializing && !q->initialized()) q->init(x, settings_.activation_init);
  if (const ShardCopies* copies = calling_shard_copies())
    return q->forward(x, copies->operand_scales[index]);
  return q->forward(x);
}

Tensor QuantHook::weight(const Tensor& w) {
  if (!weights_quantized() || !weight_quantizer) return w;
  if (const ShardCopies* copies = calling_shard_copies()) return copies->weight;
  if (mode_ == QuantMode::Initializing && !weight_quantizer->initialized())
    weight_quantizer->init(w, settings_.weight_init);
  return weight_quantizer->forward(w);
}

void QuantHook::set_quant(bool weights, bool activations) {
  if (weights) {
    mode_ = activations ? QuantMode::Quantized : QuantMode::Weights;
  } else {
    mode_ = activations ? QuantMode::Activations : QuantMode::Float;
  }
}

void QuantHook::begin_initialization() { mode_ = QuantMode::Initializing; }

void QuantHook::end_initialization() {
  check(mode_ == QuantMode::Initializing, "end_initialization() without begin_initialization()");
  mode_ = QuantMode::Quantized;
}

void QuantHook::start_capture() { capturing_ = true; }

std::vector<Tensor> QuantHook::finish_capture() {
  capturing_ = false;
  std::vector<Tensor> seen;
  seen.swap(captured_);
  return seen;
}

void QuantHook::install_shard_copies(const ShardThreads& threads, std::vector<ShardCopies> copies) {
  check(static_cast<int64_t>(copies.size()) == threads.shards(), "one set of copies per shard");
  shard_threads_ = &threads;
  shard_copies_ = std::move(copies);
}

void QuantHook::remove_shard_copies() {
  shard_threads_ = nullptr;
  shard_copies_.clear();
}

const ShardCopies* QuantHook::calling_shard_copies() const {
  if (!shard_threads_) return nullptr;
  const int64_t shard = shard_threads_->calling_shard();
  return shard < 0 ? nullptr : &shard_copies_[static_cast<size_t>(shard)];
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
