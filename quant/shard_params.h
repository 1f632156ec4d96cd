// Data-parallel reconstruction (quant/reconstruct.cpp) splits each batch
// into shards that run forward and backward on their own threads. The
// trainable tensors they share, the AdaRound-quantized weights and the
// activation scales, would collect gradients from several threads at once,
// so each shard works on leaf copies of its own: while a shard's
// ShardParams is installed on a thread, the quantizers read those copies.
#pragma once

#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace pk {

class ShardParams {
 public:
  // `owner` identifies the tensor replaced: a QuantHook for its quantized
  // weight, a UniformQuantizer for its scale.
  void add(const void* owner, Tensor copy) { copies_.emplace_back(owner, std::move(copy)); }
  const Tensor* find(const void* owner) const;

 private:
  std::vector<std::pair<const void*, Tensor>> copies_;
};

// Installs `params` on the calling thread for the scope's lifetime.
class ShardScope {
 public:
  explicit ShardScope(const ShardParams& params);
  ~ShardScope();
  ShardScope(const ShardScope&) = delete;
  ShardScope& operator=(const ShardScope&) = delete;

 private:
  const ShardParams* previous_;
};

// The installed shard's copy of owner's tensor; null outside a shard or for
// an owner it does not replace.
const Tensor* shard_copy(const void* owner);

}  // namespace pk
