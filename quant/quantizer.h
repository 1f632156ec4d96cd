// Quantizers (docs/METHOD.md section 1): the uniform affine fake quantizer for
// activations and weights, and AdaRound rounding for weights.
#pragma once

#include <string>

#include "engine/tensor.h"

namespace pk {

enum class InitMethod { MinMax, MinMaxScale, Mse };
InitMethod parse_init_method(const std::string& name);  // minmax | minmax_scale | mse
const char* init_method_name(InitMethod method);

class UniformQuantizer {
 public:
  // axis: the channel axis used when per_channel (negative counts from the end).
  UniformQuantizer(int bits, bool per_channel, int64_t axis);

  // Sets scale and zero point from x with the given method; per channel, each
  // channel on its own.
  void init(const Tensor& x, InitMethod method);
  bool initialized() const { return scale.defined(); }
  void reset() { scale = Tensor(); zero_point = Tensor(); }
  // Fake quantization; gradients flow to x (STE) and to scale when it
  // requires grad.
  Tensor forward(const Tensor& x) const { return forward(x, scale); }
  // The same with `scale_copy` in place of scale (a reconstruction shard's
  // leaf copy of it).
  Tensor forward(const Tensor& x, const Tensor& scale_copy) const;

  int bits;
  bool per_channel;
  int64_t axis;
  Tensor scale, zero_point;  // [C] (or [1] per tensor)
};

enum class Rounding { Nearest, Soft, Hard };

// Weight quantizer: nearest rounding after init; AdaRound with a learnable
// alpha (soft) during reconstruction; fixed decisions (hard) afterwards.
class WeightQuantizer : public UniformQuantizer {
 public:
  WeightQuantizer(int bits, bool per_channel) : UniformQuantizer(bits, per_channel, 0) {}
  void start_adaround(const Tensor& w);  // alpha from the fractional parts, soft mode
  void harden() { rounding = Rounding::Hard; }
  Tensor forward(const Tensor& w) const;
  // Integer codes in [0, 2^bits - 1] of the current rounding, as float.
  Tensor codes(const Tensor& w) const;

  Rounding rounding = Rounding::Nearest;
  Tensor alpha;
};

}  // namespace pk
