// Random initialization for networks built without a checkpoint (tests,
// training from scratch). Deterministic for a given seed.
#pragma once

#include <cstdint>

#include "engine/module.h"

namespace pk {

// Conv2d/Linear weights: Kaiming normal (fan_in, gain sqrt(2)), biases 0.
// BatchNorm2d: weight 1, bias 0, running mean 0, running var 1, counter 0.
// LayerNorm: weight 1, bias 0. Every other parameter (class tokens, position
// embeddings, relative position bias tables): normal with std 0.02.
void init_random(Module& net, uint64_t seed);

}  // namespace pk
