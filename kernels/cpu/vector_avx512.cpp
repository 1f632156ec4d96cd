// AVX-512 versions of the element-wise passes of reconstruction (see
// vector_avx512.h): sixteen floats per instruction, the last partial vector
// of a span under a mask.
//
// Built with -mavx512f and -ffp-contract=off: each fused multiply-add below
// is written out, so the quantization error sum rounds every operation as
// the reference's float operations do (unfused_float.h), and the rest gives
// the same bits whatever the compiler would fuse. Everything is static but
// the header's functions, for the reason gemm_avx512.h gives.
#include "kernels/cpu/vector_avx512.h"

// GCC 12's masked and converting intrinsics start from an undefined vector,
// which its flow analysis reports as uninitialized (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cfloat>

namespace pk::cpu {

namespace {

constexpr float kGamma = -0.1f, kZeta = 1.1f;  // AdaRound's rectified sigmoid stretch
constexpr int kRoundNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
constexpr int kRoundDown = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;

__m512 splat(float v) { return _mm512_set1_ps(v); }

// The lanes of [i, n) in a vector starting at i.
__mmask16 lanes(int64_t i, int64_t n) {
  const int64_t left = n - i;
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// e^x as Cephes' expf: x = m ln2 + r with |r| <= ln2 / 2 (ln2 in two parts,
// so m ln2 is exact), a degree-5 polynomial for e^r, then the scaling by 2^m
// (scalef also gives 0 and inf past the ends of the float range).
__m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, splat(-88.3762626647950f)), splat(88.3762626647949f));
  const __m512 m =
      _mm512_roundscale_ps(_mm512_mul_ps(x, splat(1.44269504088896341f)), kRoundNearest);
  __m512 r = _mm512_fnmadd_ps(m, splat(0.693359375f), x);
  r = _mm512_fnmadd_ps(m, splat(-2.12194440e-4f), r);
  constexpr float kPoly[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                             4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
  __m512 y = splat(kPoly[0]);
  for (int c = 1; c < 6; ++c) y = _mm512_fmadd_ps(y, r, splat(kPoly[c]));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), splat(1.0f));
  return _mm512_scalef_ps(y, m);
}

// ln x for positive normal x as Cephes' logf: x = f' 2^e with f' in
// [sqrt(1/2), sqrt(2)), a degree-8 polynomial in f = f' - 1, plus e ln2 (in
// two parts).
__m512 log16(__m512 x) {
  __m512 mant = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
  __m512 e = _mm512_getexp_ps(x);
  const __mmask16 high = _mm512_cmp_ps_mask(mant, splat(1.41421356237f), _CMP_GT_OQ);
  mant = _mm512_mask_mul_ps(mant, high, mant, splat(0.5f));
  e = _mm512_mask_add_ps(e, high, e, splat(1.0f));
  const __m512 f = _mm512_sub_ps(mant, splat(1.0f));
  const __m512 f2 = _mm512_mul_ps(f, f);
  constexpr float kPoly[] = {7.0376836292e-2f,  -1.1514610310e-1f, 1.1676998740e-1f,
                             -1.2420140846e-1f, 1.4249322787e-1f,  -1.6668057665e-1f,
                             2.0000714765e-1f,  -2.4999993993e-1f, 3.3333331174e-1f};
  __m512 p = splat(kPoly[0]);
  for (int c = 1; c < 9; ++c) p = _mm512_fmadd_ps(p, f, splat(kPoly[c]));
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, f), f2);
  y = _mm512_fmadd_ps(e, splat(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(splat(0.5f), f2, y);
  return _mm512_fmadd_ps(e, splat(0.693359375f), _mm512_add_ps(f, y));
}

__m512 sigmoid16(__m512 a) {
  return _mm512_div_ps(splat(1.0f),
                       _mm512_add_ps(splat(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), a))));
}

// The rectified sigmoid before clamping to [0, 1], and its clamp.
__m512 stretched16(__m512 s) { return _mm512_fmadd_ps(s, splat(kZeta - kGamma), splat(kGamma)); }
__m512 clamp16(__m512 v, float lo, float hi) {
  return _mm512_min_ps(_mm512_max_ps(v, splat(lo)), splat(hi));
}

// The fake quantizer's output (clamp(round(v / d) + z, 0, qmax) - z) d.
__m512 fake_quant16(__m512 v, __m512 d, __m512 z, float qmax) {
  const __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v, d), kRoundNearest);
  return _mm512_mul_ps(_mm512_sub_ps(clamp16(_mm512_add_ps(r, z), 0.0f, qmax), z), d);
}

// Sums of the lanes in double: two accumulators of eight, for the low and
// the high half of each vector.
struct DoubleSum {
  __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
  void add(__m512 v) {
    low = _mm512_add_pd(low, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    high = _mm512_add_pd(
        high, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  double total() const { return _mm512_reduce_add_pd(_mm512_add_pd(low, high)); }
};

}  // namespace

void adaround_forward_avx512(int64_t n, const float* w, const float* alpha, float d, float z,
                             float qmax, bool hard, float* y) {
  const __m512 vd = splat(d), vz = splat(z);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    const __m512 a = _mm512_maskz_loadu_ps(k, alpha + i);
    const __m512 h = hard ? _mm512_maskz_mov_ps(
                                _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GE_OQ), splat(1.0f))
                          : clamp16(stretched16(sigmoid16(a)), 0.0f, 1.0f);
    const __m512 down =
        _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(k, w + i), vd), kRoundDown);
    const __m512 level = clamp16(_mm512_add_ps(_mm512_add_ps(down, h), vz), 0.0f, qmax);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_sub_ps(level, vz), vd));
  }
}

void adaround_backward_avx512(int64_t n, const float* w, const float* alpha, float d, float z,
                              float qmax, const float* dy, float* dalpha) {
  const __m512 vd = splat(d), vz = splat(z), factor = splat(d * (kZeta - kGamma));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    const __m512 s = sigmoid16(_mm512_maskz_loadu_ps(k, alpha + i));
    const __m512 raw = stretched16(s);
    const __m512 h = clamp16(raw, 0.0f, 1.0f);
    const __m512 down =
        _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(k, w + i), vd), kRoundDown);
    const __m512 level = _mm512_add_ps(_mm512_add_ps(down, h), vz);
    // Zero outside the grid and where the rectified sigmoid is clamped.
    const __mmask16 passes = _mm512_cmp_ps_mask(clamp16(level, 0.0f, qmax), level, _CMP_EQ_OQ) &
                             _mm512_cmp_ps_mask(h, raw, _CMP_EQ_OQ);
    const __m512 g = _mm512_maskz_mul_ps(passes, _mm512_maskz_loadu_ps(k, dy + i), factor);
    const __m512 out = _mm512_mul_ps(_mm512_mul_ps(g, s), _mm512_sub_ps(splat(1.0f), s));
    _mm512_mask_storeu_ps(dalpha + i, k, out);
  }
}

double adaround_regularizer_avx512(int64_t n, const float* alpha, float beta, float factor,
                                   float* dalpha) {
  DoubleSum total;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    const __m512 s = sigmoid16(_mm512_maskz_loadu_ps(k, alpha + i));
    const __m512 raw = stretched16(s);
    const __m512 h = clamp16(raw, 0.0f, 1.0f);
    const __m512 t = _mm512_fmadd_ps(h, splat(2.0f), splat(-1.0f));
    const __m512 a = _mm512_abs_ps(t);
    // |2h-1|^(beta-1) through exp and log, kept finite; a = 0 taken as the
    // smallest normal float (its a^beta is 0), as on the baseline path.
    const __m512 pow_m1 = _mm512_min_ps(
        exp16(_mm512_mul_ps(splat(beta - 1.0f), log16(_mm512_max_ps(a, splat(FLT_MIN))))),
        splat(FLT_MAX));
    total.add(_mm512_maskz_sub_ps(k, splat(1.0f), _mm512_mul_ps(pow_m1, a)));
    if (!dalpha) continue;
    const __m512 sign = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GT_OQ),
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_LT_OQ), splat(-1.0f)),
        splat(1.0f));
    const __m512 scaled =
        _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(h, raw, _CMP_EQ_OQ), splat(factor), pow_m1);
    const __m512 out =
        _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(scaled, sign), s), _mm512_sub_ps(splat(1.0f), s));
    _mm512_mask_storeu_ps(dalpha + i, k, out);
  }
  return total.total();
}

void fake_quant_forward_avx512(int64_t n, const float* x, float d, float z, float qmax, float* y) {
  const __m512 vd = splat(d), vz = splat(z);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    _mm512_mask_storeu_ps(y + i, k, fake_quant16(_mm512_maskz_loadu_ps(k, x + i), vd, vz, qmax));
  }
}

double fake_quant_backward_avx512(int64_t n, const float* x, float d, float z, float qmax,
                                  const float* dy, float* dx) {
  const __m512 vd = splat(d), vz = splat(z);
  DoubleSum dscale;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    const __m512 g = _mm512_maskz_loadu_ps(k, dy + i);
    const __m512 u = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), vd);
    const __m512 r = _mm512_roundscale_ps(u, kRoundNearest);
    const __m512 level = _mm512_add_ps(r, vz);
    const __mmask16 below = _mm512_cmp_ps_mask(level, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __mmask16 inside = _mm512_cmp_ps_mask(level, splat(qmax), _CMP_LE_OQ) & ~below;
    if (dx) _mm512_mask_storeu_ps(dx + i, k, _mm512_maskz_mov_ps(inside, g));
    // d q / d D: inside the grid round(x/D) - x/D, outside the clamped level - z.
    const __m512 clamped =
        _mm512_sub_ps(_mm512_maskz_mov_ps(static_cast<__mmask16>(~below), splat(qmax)), vz);
    dscale.add(_mm512_mul_ps(g, _mm512_mask_blend_ps(inside, clamped, _mm512_sub_ps(r, u))));
  }
  return dscale.total();
}

void adam_update_avx512(int64_t n, float* param, const float* grad, float* m, float* v,
                        float step_size, float bc2_sqrt, float beta1, float beta2, float eps,
                        float weight_decay) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    const __m512 p = _mm512_maskz_loadu_ps(k, param + i);
    const __m512 g = _mm512_fmadd_ps(splat(weight_decay), p, _mm512_maskz_loadu_ps(k, grad + i));
    const __m512 m1 = _mm512_fmadd_ps(splat(beta1), _mm512_maskz_loadu_ps(k, m + i),
                                      _mm512_mul_ps(splat(1.0f - beta1), g));
    const __m512 v1 = _mm512_fmadd_ps(splat(beta2), _mm512_maskz_loadu_ps(k, v + i),
                                      _mm512_mul_ps(_mm512_mul_ps(splat(1.0f - beta2), g), g));
    const __m512 denom =
        _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v1), splat(bc2_sqrt)), splat(eps));
    _mm512_mask_storeu_ps(m + i, k, m1);
    _mm512_mask_storeu_ps(v + i, k, v1);
    _mm512_mask_storeu_ps(
        param + i, k, _mm512_sub_ps(p, _mm512_div_ps(_mm512_mul_ps(splat(step_size), m1), denom)));
  }
}

double quant_error_power_sum_avx512(const float* x, int64_t n, float step, float zero_point,
                                    float qmax, float p) {
  const __m512 vs = splat(step), vz = splat(zero_point);
  DoubleSum s;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i, n);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __m512 err = _mm512_abs_ps(_mm512_sub_ps(v, fake_quant16(v, vs, vz, qmax)));
    s.add(_mm512_maskz_mov_ps(
        k, exp16(_mm512_mul_ps(splat(p), log16(_mm512_max_ps(err, splat(FLT_MIN)))))));
  }
  return s.total();
}

}  // namespace pk::cpu
