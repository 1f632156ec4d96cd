#include "engine/parallel.h"

#include <omp.h>

#include <Eigen/Core>
#include <cstdlib>

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

}  // namespace pk
