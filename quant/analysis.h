// Where a quantized model's error comes from, layer by layer, and
// `packptq analyze` as one library call.
//
// Each quantized layer (QuantModel::layers(), network order) has a float
// configuration (its float weight, every quantizer off) and a quantized one
// (its quantized weight, its activation quantizers as the model has them).
// On a batch of images, each layer's output is compared with its output in
// the float model:
//   graph-wise: every layer quantized, so the error is what has accumulated
//               up to that layer;
//   layer-wise: only that layer quantized, on its float inputs, so the error
//               is the layer's own sensitivity.
// SQNR = 10 log10(sum y_fp^2 / sum (y_q - y_fp)^2) in dB over all images and
// elements (+infinity when the outputs are identical), and the cosine
// similarity of the flattened outputs.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/settings.h"
#include "quant/quant_model.h"
#include "tools/data/dataset.h"

namespace pk {

struct LayerError {
  std::string layer;   // QuantModel::layers()[i].name
  std::string unit;    // its unit's name
  double sqnr_db = 0;  // 10 log10(sum y_fp^2 / sum (y_q - y_fp)^2); +infinity when identical
  double cosine = 0;   // of the flattened outputs
};

struct PackAblation {
  std::string pack;  // "first..last" unit names as in the run's log
  double top1 = 0;   // top-1 with that pack's units in float, the rest quantized
};

struct ErrorAnalysis {
  int64_t images = 0;
  std::vector<LayerError> graph_wise, layer_wise;  // in network order (QuantModel::layers() order)
  std::vector<PackAblation> packs;                 // empty unless asked for
};

// model: a QuantModel whose quantizers are initialized (as after quantize()),
// on any device. float_weights: each quantized Conv/Linear layer's float
// weight by layer name (in a run: the layers' own weights, layer_weights();
// for a trained model file: from the FP32 checkpoint). A layer's quantized
// weight is what its hook makes of its weight tensor as the model is found:
// the weight quantizer's output in a run, the dequantized codes themselves
// in a loaded trained model. images: a batch [N,3,H,W] in the model's
// preprocessing, run a few images at a time. Leaves the model as it found it
// (weights bit for bit, every hook's mode), also when it throws.
ErrorAnalysis analyze_errors(QuantModel& model, const std::map<std::string, Tensor>& float_weights,
                             const Tensor& images);

// The pack ablation: `packs` as unit ranges [first,last) of the net;
// evaluates `samples` with `preprocess`, batch_size at a time, once per pack.
std::vector<PackAblation> ablate_packs(QuantModel& model,
                                       const std::map<std::string, Tensor>& float_weights,
                                       const std::vector<std::pair<int64_t, int64_t>>& packs,
                                       const std::vector<data::Sample>& samples,
                                       const data::PreprocessConfig& preprocess,
                                       int64_t batch_size);

// Each quantized Conv/Linear layer's weight tensor as it is now, by layer
// name: a run's float weights, before or after quantize().
std::map<std::string, Tensor> layer_weights(QuantModel& model);

// {"images": N, "graph_wise": [{"layer","unit","sqnr_db","cosine"}...],
//  "layer_wise": [...], "packs": [{"pack","top1"}]}; an infinite SQNR is
// written as the string "inf" ("-inf" below zero), since JSON has no infinity.
nlohmann::json analysis_to_json(const ErrorAnalysis& analysis);

// `packptq analyze`.
struct AnalyzeConfig {
  std::string quantized;     // a trained_models/ or inited_models/ file
  std::string weights;       // the FP32 checkpoint (not needed for an inited model)
  std::string dataset_path;  // ImageFolder root
  std::string split = "val";
  int64_t images = 64;          // the first `images` of the split (ImageFolder order)
  bool packs = false;           // also the pack ablation, on the whole split
  int64_t batch_size = 16;      // the pack ablation's; the file's eval_batch_size unless given
  int64_t threads = 0;          // 0: all cores
  std::string report_json;      // analysis_to_json() with the model's name and bits
  std::set<std::string> given;  // settings given explicitly (by name)
};

using AnalyzeSetting = Setting<AnalyzeConfig>;
const std::vector<AnalyzeSetting>& analyze_settings();  // in --help order

// Throws ConfigError with the command line's message for the first invalid
// setting.
void validate(const AnalyzeConfig& config);

// validate(config), sets the CPU thread count, loads the model file and the
// float weights (--weights, BatchNorm folded when the file's net is, or the
// file's own float weights), analyzes the first `images` images of the split
// and, with packs, ablates the file's packs; writes report_json when set.
// Throws ConfigError for a trained file without --weights or with --packs
// but no packs stored, std::runtime_error naming the file for bad input.
ErrorAnalysis analyze_model(const AnalyzeConfig& config);

}  // namespace pk
