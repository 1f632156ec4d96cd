// Quantization ops on the fused kernels (docs/METHOD.md sections 1 and 6).
// A quantizer's scale and zero point have one entry per channel along
// `axis`, or a single entry for per-tensor quantization. Levels are
// 0 .. 2^bits - 1.
#pragma once

#include <vector>

#include "engine/tensor.h"

namespace pk {

// (clamp(round(x/D) + z, 0, 2^bits - 1) - z) * D with a straight-through
// rounding gradient to x (zero where clamped) and the LSQ-style gradient to
// D (round(x/D) - x/D inside the grid, clamped level - z outside). z gets none.
Tensor fake_quantize(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                     int bits);

// AdaRound weight: (clamp(floor(W/D) + h(alpha) + z, 0, 2^bits - 1) - z) * D,
// per output channel (axis 0). Soft: h = rectified sigmoid of alpha, with a
// gradient to alpha only; hard: h = [alpha >= 0], no gradient.
Tensor adaround_quantize(const Tensor& w, const Tensor& alpha, const Tensor& scale,
                         const Tensor& zero_point, int bits, bool hard);

// weight * sum(1 - |2 h(alpha) - 1|^beta), a scalar with a gradient to alpha.
Tensor adaround_round_loss(const Tensor& alpha, float beta, float weight);

// alpha such that h(alpha) equals the fractional part of W/D (AdaRound's start).
Tensor adaround_init_alpha(const Tensor& w, const Tensor& scale);

// Per-channel statistics for quantizer initialization, returned on the host.
struct ChannelRange {
  std::vector<float> min, max;
};
ChannelRange channel_range(const Tensor& x, int64_t axis, bool per_channel);
// Mean |x - q_k(x)|^p for the 80 (or n) shrink candidates of the MSE search,
// [channel][candidate] flattened, in double (see the kernel).
std::vector<double> quant_range_scores(const Tensor& x, int64_t axis, bool per_channel,
                                       const ChannelRange& range, int64_t n_candidates, int bits,
                                       float p);

}  // namespace pk
