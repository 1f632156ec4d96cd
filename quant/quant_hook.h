// The quantized layer (docs/METHOD.md section 2): a LayerHook that puts a
// weight quantizer on a Conv/Linear weight and an activation quantizer on
// each operand, in a mode the pipeline sets per layer and unit.
#pragma once

#include <memory>
#include <vector>

#include "nets/layers.h"
#include "quant/quantizer.h"
#include "quant/shard_params.h"

namespace pk {

struct QuantSettings {
  int weight_bits = 3, activation_bits = 3;
  bool weight_channel_wise = false, activation_channel_wise = false;
  InitMethod weight_init = InitMethod::Mse, activation_init = InitMethod::Mse;
};

// What a hook does to the weight and the operands that pass through it.
enum class QuantMode {
  Float,        // passes both through
  Weights,      // fake-quantizes the weight only
  Activations,  // fake-quantizes the operands only
  Quantized,    // fake-quantizes both
  // Fake-quantizes both; a quantizer not initialized yet first initializes
  // from the first tensor it sees.
  Initializing,
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

  QuantMode mode() const { return mode_; }
  // Float, Weights, Activations or Quantized (ending an initialization).
  void set_quant(bool weights, bool activations);
  // Initializing until end_initialization(), which leaves the hook Quantized.
  void begin_initialization();
  void end_initialization();

  // From start_capture() to finish_capture(), operand 0 as it arrives (before
  // quantization) is recorded, whatever the mode (layer-wise reconstruction
  // captures layer inputs). finish_capture() returns the recorded tensors in
  // order.
  void start_capture();
  std::vector<Tensor> finish_capture();

  // Data-parallel reconstruction (quant/shard_params.h): until
  // remove_shard_copies(), a call from the thread bound to shard s of
  // `threads` uses copies[s] in place of the quantized weight and the operand
  // scales.
  void install_shard_copies(const ShardThreads& threads, std::vector<ShardCopies> copies);
  void remove_shard_copies();
  const std::vector<ShardCopies>& shard_copies() const { return shard_copies_; }

  std::unique_ptr<WeightQuantizer> weight_quantizer;                  // Conv/Linear
  std::vector<std::unique_ptr<UniformQuantizer>> operand_quantizers;  // null: none
  std::vector<int64_t> operand_numel;  // one sample's element count per operand
  Tensor layer_weight;  // the Conv/Linear weight (undefined for MatMul)
  int64_t weight_numel = 0;
  int weight_bits, activation_bits;

 private:
  bool weights_quantized() const {
    return mode_ == QuantMode::Weights || mode_ == QuantMode::Quantized ||
           mode_ == QuantMode::Initializing;
  }
  bool activations_quantized() const {
    return mode_ == QuantMode::Activations || mode_ == QuantMode::Quantized ||
           mode_ == QuantMode::Initializing;
  }
  // The copies of the shard the calling thread is bound to; null outside one.
  const ShardCopies* calling_shard_copies() const;

  QuantSettings settings_;
  QuantMode mode_ = QuantMode::Float;
  bool capturing_ = false;
  std::vector<Tensor> captured_;
  const ShardThreads* shard_threads_ = nullptr;
  std::vector<ShardCopies> shard_copies_;
};

}  // namespace pk
