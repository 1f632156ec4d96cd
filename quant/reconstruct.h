// Reconstruction of one unit, pack or layer (docs/METHOD.md section 6):
// AdaRound on the weights and learned activation scales, trained so that the
// quantized target reproduces its float output.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "quant/quant_model.h"

namespace pk {

struct ReconOptions {
  int64_t iterations = 20000;
  int64_t batch_size = 16;
  double round_weight = 0.01;  // --reconstruction_weight
  double beta_start = 20.0, beta_end = 2.0, warmup = 0.2;
  double alpha_lr = 3e-3;   // Adam on AdaRound alphas, constant
  double scale_lr = 4e-5;   // Adam on activation scales, cosine-annealed to 0
  double input_prob = 0.5;  // QDrop: probability of taking the quantized input
  // Finished targets keep their soft AdaRound rounding while later targets
  // are reconstructed, as the reference does; harden_soft_rounding() then
  // fixes them all. Off: each target is fixed to hard rounding when done.
  bool keep_soft_rounding = false;
};

// Units [first_unit, last_unit), or, when layer >= 0, that single layer of
// QuantModel::layers() (layer-wise AdaRound).
struct ReconTarget {
  std::string name;
  int64_t first_unit = 0, last_unit = 0;
  int64_t layer = -1;
  bool mix_inputs = false;  // QDrop input mixing
};

// One point of a target's loss curve.
struct ReconSample {
  int64_t iteration;      // 1-based
  double reconstruction;  // the batch's reconstruction loss
  double rounding;        // AdaRound's rounding loss (0 during warm-up)
  double beta;            // its exponent at this iteration
};

struct ReconResult {
  std::string name;
  double final_loss;  // reconstruction loss, mean over the last 5% of iterations
  double seconds;
  // The loss curve at about kReconCurvePoints evenly spaced iterations,
  // the last one included.
  std::vector<ReconSample> curve;
};
inline constexpr int64_t kReconCurvePoints = 100;

// BRECQ's LinearTempDecay: beta_start until warmup * iterations, then linear
// towards beta_end. `count` is 1-based.
double rounding_beta(int64_t count, const ReconOptions& opt);

// The inputs of unit `unit` over the whole calibration set, in the quantized
// model (every unit before it quantized) and in the float model. Targets
// reconstructed in network order hand them on, so that each target runs only
// the units since the previous one instead of the network from the images.
struct UnitInputs {
  int64_t unit = -1;
  Tensor x_q, x_fp;
};

// Captures the target's inputs (quantized model and float model) and float
// output over the calibration set, trains, then fixes the target's weights
// to hard rounding (unless opt.keep_soft_rounding) and its activation
// scales. With `carried`, the inputs of an earlier unit are moved on to the
// target's unit (the one holding its first unit or its layer) instead of
// running the network from the images, and on return it holds the inputs of
// that unit.
ReconResult reconstruct(QuantModel& model, const ReconTarget& target, const Tensor& calibration,
                        const ReconOptions& opt, Generator& gen, UnitInputs* carried = nullptr);

// Fixes every weight quantizer still in soft rounding to its hard decisions,
// floor + [alpha >= 0] (after targets reconstructed with keep_soft_rounding).
void harden_soft_rounding(QuantModel& model);

}  // namespace pk
