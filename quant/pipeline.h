// The Pack-PTQ pipeline and its baselines (docs/METHOD.md sections 4-6):
// initialize quantizers -> Hessian scores -> packs -> (mixed precision) ->
// reconstruct before-units, packs and after-units in order -> hard rounding.
// Baselines are the same pipeline with another grouping of units.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "quant/hessian.h"
#include "quant/quant_model.h"
#include "quant/reconstruct.h"
#include "quant/run_events.h"

namespace pk {

enum class Method {
  Pack,      // Hessian-guided packs with QDrop input mixing (default)
  QDrop,     // block-wise units with input mixing
  Brecq,     // block-wise units, quantized inputs only
  AdaRound,  // layer-wise
  Rtn,       // initialization only
};
Method parse_method(const std::string& name);
const char* method_name(Method method);

struct PipelineOptions {
  Method method = Method::Pack;
  bool mixed_precision = false;
  int64_t batch_size = 16;  // quantizer initialization and scoring batches
  ReconOptions recon;
};

struct PipelineReport {
  std::vector<UnitScore> scores;  // packable units (pack method or mixed precision)
  std::vector<Pack> packs;        // bit groups: Hessian packs, or one per block
  bool mixed_precision = false;
  MixedPrecisionPlan plan{};
  std::vector<ReconTarget> targets;
  std::vector<ReconResult> reconstruction;
  std::map<std::string, double> phase_seconds;  // init, scoring (when scored), reconstruction
};

// Blocks and between-units: the units packing works on.
std::vector<int64_t> packable_units(const Net& net);

// Runs the pipeline on `calibration` images [N, 3, H, W]. Unless `resumed`
// (quantizers restored from an initialized model), quantizers are
// initialized from the first batch. `observe` (may be empty) sees the
// phases init, scoring, mixed_precision and reconstruction start and finish
// (init's finish with the initialized model, to save it) and each target
// when it is reconstructed, with the report so far. Leaves the whole model
// quantized.
//
// `interrupted`: the report of a run stopped after some targets, whose
// quantizers (bits, scales, rounding) `model` holds again and whose random
// generator state `gen` has again: initialization, scoring and mixed
// precision are taken from it and reconstruction goes on with the next
// target.
PipelineReport run_pipeline(QuantModel& model, const Tensor& calibration,
                            const PipelineOptions& options, Generator& gen, bool resumed,
                            const RunObserver& observe = {},
                            const PipelineReport* interrupted = nullptr);

}  // namespace pk
