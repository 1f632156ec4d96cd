// GEMM on AVX-512 in the structure of BLIS: for each depth block of
// kDepth terms, op(B) is packed into panels of 32-column slivers and op(A)
// into 14-row slivers (13-row ones where that pads fewer rows); a 14x32
// register tile (28 accumulators of 16 floats, 31 of the 32 vector
// registers with the two B vectors and the broadcast A value) multiplies one
// A sliver by one B sliver, its first depth block also applying beta.
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
constexpr int64_t kPanelCols = 512;    // columns of C per thread tile (16 slivers)
constexpr int64_t kPanelSlivers = 16;  // A slivers per thread tile
// Products smaller than this (multiply-adds) run on one thread.
constexpr int64_t kParallelMinMacs = 1 << 18;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
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

// Ap[k * R + r] = op(A)[row0 + r, p0 + k] for r < rows, 0 up to R.
void pack_a(bool ta, int64_t M, int64_t K, const float* A, int64_t R, int64_t row0, int64_t rows,
            int64_t p0, int64_t depth, float* Ap) {
  if (ta) {  // A is [K, M]: each k's rows are contiguous
    const __mmask16 mask = first_lanes(rows);
    for (int64_t k = 0; k < depth; ++k) {
      const float* src = A + (p0 + k) * M + row0;
      // R of 16 lanes: the store spills into the next k, which that k then
      // overwrites (Ap holds spare floats at its end).
      _mm512_storeu_ps(Ap + k * R, _mm512_maskz_loadu_ps(mask, src));
    }
    return;
  }
  // A is [M, K]: rows contiguous in k, so 16 k at a time through a transpose.
  const __mmask16 first_r = first_lanes(R);
  for (int64_t k0 = 0; k0 < depth; k0 += 16) {
    const __mmask16 along_k = first_lanes(depth - k0);
    __m512 r[16];
    for (int64_t i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(along_k, A + (row0 + i) * K + p0 + k0)
                      : _mm512_setzero_ps();
    transpose16(r);
    const int64_t ks = min64(16, depth - k0);
    for (int64_t k = 0; k < ks; ++k) _mm512_mask_storeu_ps(Ap + (k0 + k) * R, first_r, r[k]);
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

// C[0:rows, 0:cols] = alpha * Ap Bp + C0 over `depth` terms with R rows of
// A per sliver, C rows ldc apart. C0 is C, or for the first depth block
// beta * C (0 for beta == 0, whatever C held).
template <int R>
void register_tile(int64_t depth, const float* Ap, const float* Bp, int64_t ldb, float alpha,
                   float* C, int64_t ldc, int64_t rows, int64_t cols, bool first, float beta) {
  __m512 acc[R][2];
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    const __m512 b0 = _mm512_loadu_ps(Bp + k * ldb), b1 = _mm512_loadu_ps(Bp + k * ldb + 16);
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(Ap[k * R + r]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
  const bool overwrite = first && beta == 0.0f, scaled = first && beta != 0.0f;
  const __mmask16 lo = first_lanes(cols), hi = first_lanes(cols - 16);
  auto start = [&](const float* c, __mmask16 mask) {
    if (overwrite) return _mm512_setzero_ps();
    const __m512 old = _mm512_maskz_loadu_ps(mask, c);
    return scaled ? _mm512_mul_ps(vbeta, old) : old;
  };
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    float* c = C + r * ldc;
    _mm512_mask_storeu_ps(c, lo, _mm512_fmadd_ps(scale, acc[r][0], start(c, lo)));
    _mm512_mask_storeu_ps(c + 16, hi, _mm512_fmadd_ps(scale, acc[r][1], start(c + 16, hi)));
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
  int64_t R;  // rows of A per sliver: 14 or 13
};

// C[rows, cols] of one thread tile, one depth block after another (the
// first one applies beta).
void run_tile(const Problem& p, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
              float* Ap, float* Bp) {
  if (p.K == 0) {
    for (int64_t i = row0; i < row0 + rows; ++i) {
      float* c = p.C + i * p.N + col0;
      for (int64_t j = 0; j < cols; ++j) c[j] = p.beta == 0.0f ? 0.0f : p.beta * c[j];
    }
    return;
  }
  const int64_t slivers = ceil_div(cols, kCols);
  for (int64_t p0 = 0; p0 < p.K; p0 += kDepth) {
    const int64_t depth = min64(kDepth, p.K - p0);
    // Whole slivers of an untransposed B are read in place, saving the
    // copy (GEMM 1024^3 and the convolution's forward products ran 5-10%
    // faster so), except where one depth block of B serves several row
    // blocks (the backward-data products: their packed panels ran faster).
    auto in_place = [&](int64_t s) {
      return !p.tb && (rows == p.M || p.K > kDepth) && cols - s * kCols >= kCols;
    };
    for (int64_t s = 0; s < slivers; ++s)
      if (!in_place(s))
        pack_b(p.tb, p.N, p.K, p.B, col0 + s * kCols, min64(kCols, cols - s * kCols), p0, depth,
               Bp + s * kDepth * kCols);
    for (int64_t i = row0; i < row0 + rows; i += p.R) {
      const int64_t tile_rows = min64(p.R, row0 + rows - i);
      pack_a(p.ta, p.M, p.K, p.A, p.R, i, tile_rows, p0, depth, Ap);
      for (int64_t s = 0; s < slivers; ++s) {
        const bool direct = in_place(s);
        const float* b = direct ? p.B + p0 * p.N + col0 + s * kCols : Bp + s * kDepth * kCols;
        const int64_t ldb = direct ? p.N : kCols;
        float* c = p.C + i * p.N + col0 + s * kCols;
        const int64_t tile_cols = min64(kCols, cols - s * kCols);
        if (p.R == 14)
          register_tile<14>(depth, Ap, b, ldb, p.alpha, c, p.N, tile_rows, tile_cols, p0 == 0,
                            p.beta);
        else
          register_tile<13>(depth, Ap, b, ldb, p.alpha, c, p.N, tile_rows, tile_cols, p0 == 0,
                            p.beta);
      }
    }
  }
}

// Rows of A per sliver: 13 where it leaves fewer padded rows than 14 (as
// for 64, 128 and 256 rows, the usual channel counts). The sums are the
// same either way: each element's terms stay one chain per depth block.
int64_t sliver_rows(int64_t M) { return ceil_div(M, 13) * 13 < ceil_div(M, 14) * 14 ? 13 : 14; }

}  // namespace

void gemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  const Problem p{trans_a, trans_b, M, N, K, alpha, A, B, beta, C, sliver_rows(M)};
  const int64_t panel_rows = kPanelSlivers * p.R;
  // Thread tiles: rows in blocks of panel_rows, columns split evenly into
  // sliver multiples of at most kPanelCols, enough of them for the threads.
  const bool parallel = !omp_in_parallel() && omp_get_max_threads() > 1 && M * N * K >= kParallelMinMacs;
  const int64_t threads = parallel ? omp_get_max_threads() : 1;
  const int64_t row_blocks = ceil_div(M, panel_rows);
  const int64_t slivers = ceil_div(N, kCols);
  int64_t col_blocks = ceil_div(N, kPanelCols);
  while ((row_blocks * col_blocks) % threads != 0 && col_blocks < slivers) ++col_blocks;
  const int64_t block_cols = ceil_div(slivers, col_blocks) * kCols;
  col_blocks = ceil_div(N, block_cols);
  const int64_t tiles = row_blocks * col_blocks;
  // Packed panels per thread, 64-byte aligned for aligned loads: B's, then
  // A's sliver with spare floats (pack_a's 16-lane stores).
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
      const int64_t row0 = (t / col_blocks) * panel_rows, col0 = (t % col_blocks) * block_cols;
      run_tile(p, row0, min64(panel_rows, M - row0), col0, min64(block_cols, N - col0),
               buffer + b_floats, buffer);
    }
  }
  std::free(buffers);
}

}  // namespace pk::cpu
