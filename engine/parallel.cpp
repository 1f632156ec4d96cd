#include "engine/parallel.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <exception>

namespace pk {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  Eigen::setNbThreads(n);
}

int num_threads() { return omp_get_max_threads(); }

int threads_from_env() {
  const char* env = std::getenv("PACKPTQ_THREADS");
  return env ? std::atoi(env) : 0;
}

void run_on_threads(int64_t count, const std::function<void(int64_t)>& task) {
  if (count == 1) return task(0);
  std::exception_ptr error;
#pragma omp parallel for num_threads(static_cast<int>(count)) schedule(static, 1)
  for (int64_t i = 0; i < count; ++i) {
    // This thread's own ICV: parallel regions and Eigen inside the task see
    // one thread (Eigen also stays serial inside any team of several).
    omp_set_num_threads(1);
    try {
      task(i);
    } catch (...) {
#pragma omp critical(run_on_threads_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

int64_t batch_shards(bool on_cpu, int64_t rows) {
  return on_cpu ? std::min<int64_t>(num_threads(), rows) : 1;
}

ShardRows shard_rows(int64_t rows, int64_t shards, int64_t s) {
  const int64_t begin = s * rows / shards;
  return {begin, (s + 1) * rows / shards - begin};
}

bool in_parallel_region() { return omp_in_parallel(); }

}  // namespace pk
