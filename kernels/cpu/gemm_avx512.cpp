// GEMM on AVX-512 in the structure of BLIS: for each depth block of
// kDepth terms, op(B) is packed into panels of 32-column slivers and op(A)
// into 14-row slivers; a 14x32 register tile (28 accumulators of 16 floats,
// 31 of the 32 vector registers with the two B vectors and the broadcast A
// value) multiplies one A sliver by one B sliver.
//
// Loop order: a thread owns a tile of C (rows x up to kPanelCols columns);
// for each depth block it packs its B panel (256 x 512 floats: 512 KiB, in
// L2), then for each A sliver (14 KiB, in L1) runs the register tile along
// the panel. Transposed B (the weight gradient of a convolution, X^T) is
// packed through 16x16 register transposes, as plain copies would write
// with a 128-byte stride.
//
// Everything here is static: only gemm_avx512 leaves this file (see
// gemm_avx512.h). No std:: templates are used for the same reason.
#include "kernels/cpu/gemm_avx512.h"

// GCC 12's unpack and shuffle intrinsics start from an undefined vector,
// which its flow analysis reports as uninitialized (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <cstdlib>
#include <new>

namespace pk::cpu {

namespace {

constexpr int64_t kRows = kGemmAvx512Rows, kCols = kGemmAvx512Cols, kDepth = kGemmAvx512Depth;
constexpr int64_t kPanelCols = 512;  // columns of C per thread tile (16 slivers)
constexpr int64_t kPanelRows = 224;  // rows of C per thread tile (16 slivers)
// Products smaller than this (multiply-adds) run on one thread.
constexpr int64_t kParallelMinMacs = 1 << 18;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// Ap[k * kRows + r] = op(A)[row0 + r, p0 + k] for r < rows, 0 beyond.
void pack_a(bool ta, int64_t M, int64_t K, const float* A, int64_t row0, int64_t rows, int64_t p0,
            int64_t depth, float* Ap) {
  if (ta) {  // A is [K, M]: each k's rows are contiguous
    const __mmask16 mask = first_lanes(rows);
    for (int64_t k = 0; k < depth; ++k) {
      const float* src = A + (p0 + k) * M + row0;
      // 14 of 16 lanes: the store spills 2 floats into the next k, which
      // that k then overwrites (Ap holds two spare floats at its end).
      _mm512_storeu_ps(Ap + k * kRows, _mm512_maskz_loadu_ps(mask, src));
    }
    return;
  }
  for (int64_t r = 0; r < kRows; ++r) {
    if (r < rows) {
      const float* src = A + (row0 + r) * K + p0;
      for (int64_t k = 0; k < depth; ++k) Ap[k * kRows + r] = src[k];
    } else {
      for (int64_t k = 0; k < depth; ++k) Ap[k * kRows + r] = 0.0f;
    }
  }
}

// Transposes 16 rows of 16 floats in registers: r[i] lane j -> r[j] lane i.
void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}

// One sliver: Bp[k * kCols + c] = op(B)[p0 + k, col0 + c] for c < cols, 0 beyond.
void pack_b(bool tb, int64_t N, int64_t K, const float* B, int64_t col0, int64_t cols, int64_t p0,
            int64_t depth, float* Bp) {
  if (!tb) {  // B is [K, N]: each k's columns are contiguous
    const __mmask16 lo = first_lanes(cols), hi = first_lanes(cols - 16);
    for (int64_t k = 0; k < depth; ++k) {
      const float* src = B + (p0 + k) * N + col0;
      _mm512_store_ps(Bp + k * kCols, _mm512_maskz_loadu_ps(lo, src));
      _mm512_store_ps(Bp + k * kCols + 16, _mm512_maskz_loadu_ps(hi, src + 16));
    }
    return;
  }
  // B is [N, K]: column c of op(B) is row col0 + c of B, contiguous in k.
  for (int64_t half = 0; half < kCols; half += 16) {
    for (int64_t k0 = 0; k0 < depth; k0 += 16) {
      const __mmask16 along_k = first_lanes(depth - k0);
      __m512 r[16];
      for (int64_t c = 0; c < 16; ++c)
        r[c] = half + c < cols
                   ? _mm512_maskz_loadu_ps(along_k, B + (col0 + half + c) * K + p0 + k0)
                   : _mm512_setzero_ps();
      transpose16(r);
      const int64_t ks = min64(16, depth - k0);
      for (int64_t k = 0; k < ks; ++k) _mm512_store_ps(Bp + (k0 + k) * kCols + half, r[k]);
    }
  }
}

// C[0:rows, 0:cols] += alpha * Ap Bp over `depth` terms, C rows ldc apart.
void register_tile(int64_t depth, const float* Ap, const float* Bp, float alpha, float* C,
                   int64_t ldc, int64_t rows, int64_t cols) {
  __m512 acc[kRows][2];
#pragma GCC unroll 14
  for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    const __m512 b0 = _mm512_load_ps(Bp + k * kCols), b1 = _mm512_load_ps(Bp + k * kCols + 16);
#pragma GCC unroll 14
    for (int r = 0; r < kRows; ++r) {
      const __m512 a = _mm512_set1_ps(Ap[k * kRows + r]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
  const __mmask16 lo = first_lanes(cols), hi = first_lanes(cols - 16);
#pragma GCC unroll 14
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows) break;
    float* c = C + r * ldc;
    _mm512_mask_storeu_ps(c, lo, _mm512_fmadd_ps(scale, acc[r][0], _mm512_maskz_loadu_ps(lo, c)));
    _mm512_mask_storeu_ps(c + 16, hi,
                          _mm512_fmadd_ps(scale, acc[r][1], _mm512_maskz_loadu_ps(hi, c + 16)));
  }
}

struct Problem {
  bool ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;
  const float* B;
  float beta;
  float* C;
};

// C[rows, cols] of one thread tile: beta first, then each depth block.
void run_tile(const Problem& p, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
              float* Ap, float* Bp) {
  for (int64_t i = row0; i < row0 + rows; ++i) {
    float* c = p.C + i * p.N + col0;
    for (int64_t j = 0; j < cols; ++j) c[j] = p.beta == 0.0f ? 0.0f : p.beta * c[j];
  }
  const int64_t slivers = ceil_div(cols, kCols);
  for (int64_t p0 = 0; p0 < p.K; p0 += kDepth) {
    const int64_t depth = min64(kDepth, p.K - p0);
    for (int64_t s = 0; s < slivers; ++s)
      pack_b(p.tb, p.N, p.K, p.B, col0 + s * kCols, min64(kCols, cols - s * kCols), p0, depth,
             Bp + s * kDepth * kCols);
    for (int64_t i = row0; i < row0 + rows; i += kRows) {
      const int64_t tile_rows = min64(kRows, row0 + rows - i);
      pack_a(p.ta, p.M, p.K, p.A, i, tile_rows, p0, depth, Ap);
      for (int64_t s = 0; s < slivers; ++s)
        register_tile(depth, Ap, Bp + s * kDepth * kCols, p.alpha, p.C + i * p.N + col0 + s * kCols,
                      p.N, tile_rows, min64(kCols, cols - s * kCols));
    }
  }
}

}  // namespace

void gemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  const Problem p{trans_a, trans_b, M, N, K, alpha, A, B, beta, C};
  // Thread tiles: rows in blocks of kPanelRows, columns split evenly into
  // sliver multiples of at most kPanelCols, enough of them for the threads.
  const bool parallel = !omp_in_parallel() && omp_get_max_threads() > 1 && M * N * K >= kParallelMinMacs;
  const int64_t threads = parallel ? omp_get_max_threads() : 1;
  const int64_t row_blocks = ceil_div(M, kPanelRows);
  const int64_t slivers = ceil_div(N, kCols);
  int64_t col_blocks = ceil_div(N, kPanelCols);
  while ((row_blocks * col_blocks) % threads != 0 && col_blocks < slivers) ++col_blocks;
  const int64_t block_cols = ceil_div(slivers, col_blocks) * kCols;
  col_blocks = ceil_div(N, block_cols);
  const int64_t tiles = row_blocks * col_blocks;
  // Packed panels per thread, 64-byte aligned for aligned loads: B's, then
  // A's sliver with two spare floats (pack_a's 16-lane stores).
  const int64_t b_floats = kDepth * block_cols, a_floats = kDepth * kRows + 16;
  const int64_t per_thread = (b_floats + a_floats + 15) / 16 * 16;
  float* buffers =
      static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(threads * per_thread) * sizeof(float)));
  if (!buffers) throw std::bad_alloc();
#pragma omp parallel num_threads(static_cast<int>(threads)) if (threads > 1)
  {
    float* buffer = buffers + omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t row0 = (t / col_blocks) * kPanelRows, col0 = (t % col_blocks) * block_cols;
      run_tile(p, row0, min64(kPanelRows, M - row0), col0, min64(block_cols, N - col0),
               buffer + b_floats, buffer);
    }
  }
  std::free(buffers);
}

}  // namespace pk::cpu
