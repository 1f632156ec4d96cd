// Thread count for the CPU kernels (OpenMP and Eigen share it).
#pragma once

namespace pk {

// n <= 0 means all cores. Until called, OpenMP's default applies
// (OMP_NUM_THREADS or all cores).
void set_num_threads(int n);
int num_threads();
// $PACKPTQ_THREADS, or 0 (all cores) when unset: the default of --threads.
int threads_from_env();

}  // namespace pk
