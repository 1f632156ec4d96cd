// Hessian-guided unit scores (docs/METHOD.md section 4) and the packs they
// induce, plus pack-wise mixed precision (section 5).
#pragma once

#include <cstdint>
#include <vector>

#include "quant/quant_model.h"

namespace pk {

struct UnitScore {
  int64_t unit;
  double kl;        // L_t
  double hessian;   // S_t = (L_t - first_order) / max(second_order, 1e-12)
  double omega;     // Omega_t = S_t * mean |dz|
  double first_order = 0;   // A / N = mean g * dz
  double second_order = 0;  // B / N = mean dz^2 / 2
};

// Scores of `units` (indices into net().units()) over the calibration images
// [N, 3, H, W] in batches of batch_size. Quantizers must be initialized; the
// model's quantization switches are left off.
std::vector<UnitScore> hessian_scores(QuantModel& model, const Tensor& calibration,
                                      int64_t batch_size, const std::vector<int64_t>& units);

// A pack: units [first, last) of the net.
struct Pack {
  int64_t first, last;
  double score = 0.0;  // mean Omega of its units
  int bits = 0;        // weight and activation bits (mixed precision)
};

// Visits units by S ascending; each visited unit below the current back end
// starts a pack reaching to it. `scores` cover a contiguous run of units in
// network order; the packs cover exactly that run and are returned in
// network order.
std::vector<Pack> make_packs(const std::vector<UnitScore>& scores);

// Pack-level mixed precision. bits in {3, 4, 6} (weights == activations);
// boundary units (before/after) get the high choice; packs start at mid and
// are raised to high by score (descending) while the budget allows. Sets
// Pack::bits and returns the boundary bits.
struct MixedPrecisionPlan {
  int low, mid, high;
  int boundary_bits;
  double budget, used, average_bits;
};
MixedPrecisionPlan assign_mixed_precision(const QuantModel& model, std::vector<Pack>& packs,
                                          const std::vector<int64_t>& boundary_units, int bits);

}  // namespace pk
