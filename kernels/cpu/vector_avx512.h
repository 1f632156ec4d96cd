// The AVX-512 element-wise kernels (vector_avx512.cpp, built with -mavx512f):
// the per-weight and per-element passes of reconstruction, each on one
// contiguous span. The callers in quant.cpp, optim.cpp and unfused_float.cpp
// keep the channel walk and the threads and call these where active_isa() is
// Isa::Avx512. As gemm_avx512.h, this header holds no inline code.
//
// Their exp and log are polynomial approximations of their own (within a few
// float ulps of the baseline path's) and their sums run in other orders, so
// results differ from the baseline path in the last digits; on any machine
// with AVX-512 they are the same.
#pragma once

#include <cstdint>

namespace pk::cpu {

// AdaRound weights of one channel span (scale d, zero point z): soft, or
// hard (h = alpha >= 0) when `hard`; see adaround_forward in kernels.h.
void adaround_forward_avx512(int64_t n, const float* w, const float* alpha, float d, float z,
                             float qmax, bool hard, float* y);

// dalpha of one channel span; see adaround_backward in kernels.h.
void adaround_backward_avx512(int64_t n, const float* w, const float* alpha, float d, float z,
                              float qmax, const float* dy, float* dalpha);

// Sum over the span of 1 - |2h - 1|^beta; with dalpha, also writes
// factor |2h-1|^(beta-1) sign(2h-1) s (1 - s), s = sigmoid(alpha), zero
// where h is clamped (see adaround_regularizer in quant.cpp).
double adaround_regularizer_avx512(int64_t n, const float* alpha, float beta, float factor,
                                   float* dalpha);

// Fake quantization of one channel span; see fake_quant_forward.
void fake_quant_forward_avx512(int64_t n, const float* x, float d, float z, float qmax, float* y);

// dx of one channel span (when dx is not null) and the span's part of
// dscale, summed in double; see fake_quant_backward.
double fake_quant_backward_avx512(int64_t n, const float* x, float d, float z, float qmax,
                                  const float* dy, float* dx);

// One Adam step on a span: the update of adam_update with its bias
// corrections folded into step_size and bc2_sqrt.
void adam_update_avx512(int64_t n, float* param, const float* grad, float* m, float* v,
                        float step_size, float bc2_sqrt, float beta1, float beta2, float eps,
                        float weight_decay);

// quant_error_power_sum<float> (unfused_float.h), each float operation
// rounded on its own as there.
double quant_error_power_sum_avx512(const float* x, int64_t n, float step, float zero_point,
                                    float qmax, float p);

}  // namespace pk::cpu
