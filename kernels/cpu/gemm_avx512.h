// The AVX-512 GEMM (gemm_avx512.cpp, the only file built with -mavx512f).
// This header stays free of inline code: an inline function compiled in that
// file could be the copy the linker keeps for every caller, AVX-512
// instructions included, and crash a CPU without them.
#pragma once

#include <cstdint>

namespace pk::cpu {

// Row-major C[M, N] = alpha * op(A) op(B) + beta * C with A [M, K] (or
// [K, M] when trans_a) and B [K, N] (or [N, K]), contiguous. Each element
// sums its K terms in blocks of kGemmAvx512Depth, each block a chain of
// fused multiply-adds from zero added to C in order: the same result on any
// machine and for any thread count. Threads share the tiles unless the call
// comes from inside a parallel region.
void gemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, const float* B, float beta, float* C);

// The widest register tile (rows x columns) and the depth block.
constexpr int64_t kGemmAvx512Rows = 14, kGemmAvx512Cols = 32, kGemmAvx512Depth = 256;

}  // namespace pk::cpu
