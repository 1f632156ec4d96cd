// Data-parallel reconstruction (quant/reconstruct.cpp) splits each batch
// into shards whose forward and backward run at once on the threads of
// run_on_threads, through the same net and hooks. The trainable tensors they
// share, the AdaRound-quantized weights and the activation scales, would
// collect gradients from several threads at once, so each shard trains leaf
// copies of its own. The reconstruction step installs every shard's copies on
// the hooks it trains (QuantHook::install_shard_copies) and binds each
// shard's task to its shard while the task runs (ShardThreads::Binding); a
// hook then hands the layer the copies of the shard that calls it.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "engine/tensor.h"

namespace pk {

// One shard's copies of one hook's trainable tensors.
struct ShardCopies {
  Tensor weight;                       // the quantized weight; undefined without a weight quantizer
  std::vector<Tensor> operand_scales;  // one per operand; undefined where it has no quantizer
};

// Which thread runs which shard of a step.
class ShardThreads {
 public:
  explicit ShardThreads(int64_t shards) : threads_(static_cast<size_t>(shards)) {}
  int64_t shards() const { return static_cast<int64_t>(threads_.size()); }
  // The shard the calling thread is bound to, or -1.
  int64_t calling_shard() const;

  // Binds the calling thread to `shard` for the binding's lifetime.
  class Binding {
   public:
    Binding(ShardThreads& threads, int64_t shard);
    ~Binding();
    Binding(const Binding&) = delete;
    Binding& operator=(const Binding&) = delete;

   private:
    std::atomic<std::thread::id>& thread_;
  };

 private:
  // Each entry is written by its shard's task while the others read it.
  std::vector<std::atomic<std::thread::id>> threads_;
};

}  // namespace pk
