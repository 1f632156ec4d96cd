// Work sizes from which the CPU kernels spread a loop over OpenMP threads:
// below them, waking the threads costs more than they save.
#pragma once

#include <cstdint>

namespace pk::cpu {

// Elements of a loop doing a few operations per element (element-wise ops,
// copies, reductions, softmax and norm rows).
constexpr int64_t kParallelMin = 32768;

// Multiply-adds of a convolution (thread wake-up dominates tiny convolutions).
constexpr int64_t kParallelMinMacs = int64_t{1} << 18;

}  // namespace pk::cpu
