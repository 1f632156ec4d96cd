// Per-target checkpoints of a quantization run (docs/METHOD.md section 8):
// after each reconstruction target, quantize() writes what it needs to go
// on from there, atomically (temporary file + rename), to
//   {output_dir}/checkpoints/{run name}.safetensors
// so that a run killed at any moment continues from its last finished
// target with `--resume` and ends with the model the uninterrupted run
// would have made, bit for bit.
//
// Tensors: every quantizer's state, named as in quantized model files
// (<layer>.weight_scale/_zero_point, <layer>.input_scale/_zero_point,
// <layer>.operand0_scale/...), and <layer>.alpha, AdaRound's rounding
// variables of the layers reconstructed so far. The float weights are not
// stored: a resumed run loads them again from --weights (their fingerprint
// is checked). __metadata__ "packptq_checkpoint": the run's configuration,
// name, the random generator's state, per layer its bits and rounding, and
// the pipeline so far (scores, packs, mixed-precision plan, finished
// targets with their losses, phase times). The carried unit inputs are not
// stored: the resumed run computes them again from the calibration images,
// which gives the same values.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "quant/pipeline.h"
#include "quant/quant_model.h"

namespace pk {

inline constexpr const char* kRunCheckpointFormat = "packptq-run-checkpoint-v1";

struct RunCheckpoint {
  nlohmann::json config;  // config_to_json() of the run as it ran
  std::string started_at;  // the run's name prefix
  std::string inited_model_path;
  std::string generator_state;  // Generator::state() after the last finished target
  uint64_t weights_fingerprint = 0;  // net_fingerprint() of the float net
  // kernel_path() of the run: another path sums in another order. Empty in
  // checkpoints written before it was recorded.
  std::string kernel_path;
  PipelineReport pipeline;  // everything up to the last finished target
};

// Writes `checkpoint` and the quantizers of `model` to `path` atomically,
// in a folder that must exist; throws std::runtime_error naming the path (a
// full disk, a folder gone) and leaves the previous checkpoint as it was.
void save_run_checkpoint(const std::string& path, const RunCheckpoint& checkpoint,
                         QuantModel& model);

// The checkpoint at `path` without its tensors. Throws std::runtime_error
// naming the file when it is not a run checkpoint.
RunCheckpoint read_run_checkpoint(const std::string& path);

// Restores the quantizers saved at `path` into `model` (built with the same
// configuration): bits, scales, zero points, rounding and AdaRound
// variables, on `device` (the model's). Throws std::runtime_error naming the
// file and the layer when they do not fit.
void restore_run_checkpoint(const std::string& path, QuantModel& model, Device device);

// `path` itself when it is a file, else the newest checkpoint in
// path/checkpoints/ (names start with the run's start time). Throws
// ConfigError when there is none.
std::string find_run_checkpoint(const std::string& path);

// A hash (FNV-1a) of tensors in name order: names, shapes and values.
uint64_t tensors_fingerprint(const TensorMap& tensors);
// tensors_fingerprint() of the net's parameters and buffers, to tell that a
// resumed run loaded the same float weights.
uint64_t net_fingerprint(const Net& net);

}  // namespace pk
