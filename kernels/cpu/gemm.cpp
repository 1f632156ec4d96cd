// GEMM on the instruction set in use (kernels/cpu/isa.h): Eigen's for the
// build's baseline (AVX2+FMA), gemm_avx512.cpp's tiles for AVX-512. Eigen
// maps the row-major buffers as row-major matrices, so that no data is
// copied; transposes are Eigen expressions.
#include <Eigen/Core>
#include <string>

#include "kernels/cpu/gemm_avx512.h"
#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"

namespace pk::cpu {

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using Map = Eigen::Map<RowMajor>;

// Eigen splits each product into blocks sized from the cache sizes it reads
// with cpuid, and the blocks fix the order in which a product's terms are
// summed: machines with other caches gave other results (a fixture run's
// top-1 moved by 0.8). Fixed sizes give every machine the same blocking;
// these are what Eigen reads on the AMD EPYC that measured the figures in
// docs/PERFORMANCE.md, so its results stay as they were. Set before main,
// ahead of every product (conv.cpp's included).
constexpr std::ptrdiff_t kL1 = 32 * 1024, kL2 = 1024 * 1024, kL3 = 320 * 1024 * 1024;
[[maybe_unused]] const bool kBlockingFixed = [] {
  Eigen::setCpuCacheSizes(kL1, kL2, kL3);
  return true;
}();

void gemm_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              const float* B, float beta, float* C) {
  Map c(C, M, N);
  // A is stored [M, K] (or [K, M] when transposed), B [K, N] (or [N, K]).
  ConstMap a(A, ta ? K : M, ta ? M : K);
  ConstMap b(B, tb ? N : K, tb ? K : N);
  if (beta == 0.0f) {
    if (!ta && !tb) c.noalias() = alpha * (a * b);
    else if (ta && !tb) c.noalias() = alpha * (a.transpose() * b);
    else if (!ta && tb) c.noalias() = alpha * (a * b.transpose());
    else c.noalias() = alpha * (a.transpose() * b.transpose());
    return;
  }
  if (beta != 1.0f) c *= beta;
  if (!ta && !tb) c.noalias() += alpha * (a * b);
  else if (ta && !tb) c.noalias() += alpha * (a.transpose() * b);
  else if (!ta && tb) c.noalias() += alpha * (a * b.transpose());
  else c.noalias() += alpha * (a.transpose() * b.transpose());
}

// One product on the path in use.
void product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
             const float* B, float beta, float* C) {
#if defined(PACKPTQ_WITH_AVX512)
  if (active_isa() == Isa::Avx512) return gemm_avx512(ta, tb, M, N, K, alpha, A, B, beta, C);
#endif
  gemm_one(ta, tb, M, N, K, alpha, A, B, beta, C);
}

}  // namespace

std::string gemm_summation_order() {
#if defined(PACKPTQ_WITH_AVX512)
  if (active_isa() == Isa::Avx512)
    return "GEMM tiles of " + std::to_string(kGemmAvx512Cols) +
           " columns summed in depth blocks of " + std::to_string(kGemmAvx512Depth);
#endif
  return "GEMM blocking for " + std::to_string(kL1 / 1024) + " KiB L1, " + std::to_string(kL2 / (1024 * 1024)) +
         " MiB L2, " + std::to_string(kL3 / (1024 * 1024)) + " MiB L3";
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, const float* B, float beta, float* C, int64_t batch, int64_t stride_a,
          int64_t stride_b, int64_t stride_c) {
  if (M == 0 || N == 0) return;
  active_isa();  // a bad PACKPTQ_CPU_ISA throws here, not inside a parallel region
  if (batch == 1) {
    product(trans_a, trans_b, M, N, K, alpha, A, B, beta, C);  // parallel inside
    return;
  }
  // Many small products (attention heads): one per thread, each single-threaded.
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < batch; ++i)
    product(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, B + i * stride_b, beta,
            C + i * stride_c);
}

}  // namespace pk::cpu
