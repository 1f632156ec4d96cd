// Thread count for the CPU kernels (OpenMP and Eigen share it).
#pragma once

#include <cstdint>
#include <functional>

namespace pk {

// n <= 0 means all cores. Until called, OpenMP's default applies
// (OMP_NUM_THREADS or all cores).
void set_num_threads(int n);
int num_threads();
// $PACKPTQ_THREADS, or 0 (all cores) when unset: the default of --threads.
int threads_from_env();

// Runs task(0), ..., task(count - 1) at once, one per thread (count at most
// num_threads()); the kernels inside a task run single-threaded, so small
// tasks pay no synchronization. A single task runs on the calling thread.
// The first exception a task throws is rethrown here once all have finished.
void run_on_threads(int64_t count, const std::function<void(int64_t)>& task);
// How many shards a batch of `rows` rows is split into for run_on_threads:
// one per thread on the CPU (at most one per row), one elsewhere.
int64_t batch_shards(bool on_cpu, int64_t rows);
// Rows [begin, begin + count) of shard s of `shards` over `rows` rows.
struct ShardRows {
  int64_t begin, count;
};
ShardRows shard_rows(int64_t rows, int64_t shards, int64_t s);
// Whether the calling code runs inside such tasks (or any parallel region).
bool in_parallel_region();

}  // namespace pk
