// The instruction set the CPU kernels use, chosen once per process (see
// cpu_isa() in kernels/kernels.h). The GEMM and the element-wise passes of
// reconstruction (AdaRound, fake quantization, Adam, the MSE range search)
// have an AVX-512 path.
#pragma once

namespace pk::cpu {

enum class Isa {
  Baseline,  // what the whole build targets (AVX2+FMA on x86-64): Eigen's GEMM
  Avx512,    // kernels/cpu/gemm_avx512.cpp and vector_avx512.cpp
};

Isa active_isa();

}  // namespace pk::cpu
