// BatchNorm folding (--fold_bn): each eval-mode BatchNorm2d that directly
// follows a Conv2d is merged into that conv's weight and bias,
//   W' = W * g / sqrt(var + eps),  b' = beta + (b - mean) * g / sqrt(var + eps),
// and then passes its input through unchanged. The weight quantizers then see
// the folded weights, as in BRECQ's folding. Off by default (docs/METHOD.md
// sections 2 and 10.2: the reference keeps BatchNorm as a float op).
#pragma once

#include <cstdint>

#include "nets/net.h"

namespace pk {

// Folds every BatchNorm2d of `net` into the Conv2d registered right before it
// (same output channels); returns how many were folded. A conv without a
// bias gets one. Throws if a BatchNorm2d has no such conv, naming it.
int64_t fold_batch_norms(Net& net);

}  // namespace pk
