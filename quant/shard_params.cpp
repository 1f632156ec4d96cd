#include "quant/shard_params.h"

namespace pk {

namespace {
thread_local const ShardParams* t_shard = nullptr;
}

const Tensor* ShardParams::find(const void* owner) const {
  for (const auto& [key, copy] : copies_)  // a handful of entries per target
    if (key == owner) return &copy;
  return nullptr;
}

ShardScope::ShardScope(const ShardParams& params) : previous_(t_shard) { t_shard = &params; }
ShardScope::~ShardScope() { t_shard = previous_; }

const Tensor* shard_copy(const void* owner) { return t_shard ? t_shard->find(owner) : nullptr; }

}  // namespace pk
