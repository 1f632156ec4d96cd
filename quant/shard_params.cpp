#include "quant/shard_params.h"

namespace pk {

int64_t ShardThreads::calling_shard() const {
  const std::thread::id self = std::this_thread::get_id();
  for (size_t s = 0; s < threads_.size(); ++s)  // one entry per thread
    if (threads_[s].load(std::memory_order_relaxed) == self) return static_cast<int64_t>(s);
  return -1;
}

ShardThreads::Binding::Binding(ShardThreads& threads, int64_t shard)
    : thread_(threads.threads_[static_cast<size_t>(shard)]) {
  thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

ShardThreads::Binding::~Binding() { thread_.store(std::thread::id(), std::memory_order_relaxed); }

}  // namespace pk
