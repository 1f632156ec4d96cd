// What a quantization run reports while it runs: each phase as it starts and
// finishes, each reconstruction target when it is done, each file it saves.
// The command line draws its progress from them, and features such as a run
// report or per-target checkpoints hook in here instead of into the pipeline.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "quant/reconstruct.h"

namespace pk {

struct PipelineReport;

enum class RunPhase {
  Data,
  Fp32Eval,
  Init,
  Scoring,
  MixedPrecision,
  Reconstruction,
  QuantEval,
  Analysis,
  Save
};
// "data", "fp32_eval", "init", "scoring", "mixed_precision", "reconstruction",
// "quant_eval", "analysis", "save": the keys of the report's timing.
const char* run_phase_name(RunPhase phase);

struct RunEvent {
  enum class Kind { PhaseStarted, PhaseFinished, TargetFinished, FileSaved };
  RunEvent(Kind kind, RunPhase phase) : kind(kind), phase(phase) {}
  Kind kind;
  RunPhase phase;
  double seconds = 0;  // PhaseFinished: the phase's wall time
  // TargetFinished: target_index of target_count (0-based), what was
  // reconstructed and how it went.
  int64_t target_index = -1, target_count = 0;
  const ReconTarget* target = nullptr;
  const ReconResult* result = nullptr;
  // The model as it stands (Init finished: initialized; TargetFinished: the
  // targets so far reconstructed); null for the phases before it exists.
  QuantModel* model = nullptr;
  // TargetFinished: the pipeline's report so far (quant/pipeline.h).
  const PipelineReport* pipeline = nullptr;
  std::string path;  // FileSaved: the file written
};

using RunObserver = std::function<void(const RunEvent&)>;

}  // namespace pk
