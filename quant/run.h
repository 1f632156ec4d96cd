// A whole quantization run in one call, as `packptq quantize` does it: load
// the model (or resume an initialized one), check the dataset, FP32
// evaluation, quantizer initialization, Hessian scoring and packing, mixed
// precision, reconstruction, quantized evaluation, and the run's files:
//   {output_dir}/{timestamp}_{model}_w{w}_a{a}[_mixed_precision].log
//   {output_dir}/inited_models/{timestamp}_{model}_w{w}_a{a}.safetensors
//   {output_dir}/trained_models/{timestamp}_{model}_w{w}_a{a}.safetensors
//   {output_dir}/{timestamp}_{model}_w{w}_a{a}[_mixed_precision].html, or
//     report_html: the report as a page (quant/report_html.h)
//   report_json, when set: report_to_json() of the result.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quant/analysis.h"
#include "quant/pipeline.h"
#include "quant/run_config.h"
#include "quant/run_events.h"
#include "tools/data/evaluate.h"

namespace pk {

struct PackResult {
  std::vector<std::string> units;  // unit names, in network order
  double score = 0;
  int weight_bits = 0, activation_bits = 0;
};

struct UnitScoreResult {
  std::string name, kind;
  double kl = 0, hessian = 0, omega = 0;
  double first_order = 0, second_order = 0;  // the terms of hessian (docs/METHOD.md section 4)
};

// A quantized layer as the run left it: bits, and its quantizers' scales
// summarized (per-channel scales as their minimum, mean and maximum).
struct LayerResult {
  std::string name, unit, kind;  // kind: conv, linear or matmul
  int weight_bits = 0, activation_bits = 0;
  struct ScaleSummary {
    int64_t count = 0;  // 0: no quantizer (matmul weights, the image input)
    double min = 0, mean = 0, max = 0;
  };
  ScaleSummary weight_scale;
  std::vector<ScaleSummary> operand_scales;  // the input, or both matmul operands
};

struct QuantizeResult {
  // The configuration as run: with pretrained_model_path, the model name and
  // quantization settings are the file's; threads is the count used.
  QuantizeConfig config;
  std::string started_at;  // local time, also the files' prefix
  int64_t val_images = 0;
  data::EvalResult fp32, quantized;
  std::vector<PackResult> packs;       // bit groups: Hessian packs, or one per block
  std::vector<UnitScoreResult> units;  // scores of the packable units (when scored)
  std::vector<ReconResult> reconstruction;
  std::vector<LayerResult> layers;  // in network order
  // Per-layer error analysis on the first analysis_images validation
  // images (quant/analysis.h); none when analysis_images is 0.
  std::optional<ErrorAnalysis> analysis;
  double average_bits = 0;
  bool mixed_precision = false;
  MixedPrecisionPlan plan{};  // when mixed_precision
  // Wall time per phase (run_phase_name keys; scoring 0 when not scored)
  // and "total".
  std::map<std::string, double> seconds;
  std::string log_path, inited_model_path, trained_model_path, html_path;
};

// Runs the whole configuration: validate(config), then as described above.
// `observe` (may be empty) sees every phase start and finish (data,
// fp32_eval, init, scoring, mixed_precision, reconstruction, quant_eval,
// analysis, save), each reconstruction target when it is done, and each file saved.
// Sets the process's CPU thread count to config.threads. Throws ConfigError
// for invalid settings and std::runtime_error naming the file for bad input;
// both leave no file behind when they concern the inputs. A failure later
// leaves the log, ending with the error, and the initialized model if it was
// saved, but no trained model.
QuantizeResult quantize(const QuantizeConfig& config, const RunObserver& observe = {});

// The report: every figure of the result. Two runs of the same configuration
// (seed and threads included) give the same JSON except its "timing" object,
// which holds every wall-clock value. File paths are left out: they carry the
// start time.
nlohmann::json report_to_json(const QuantizeResult& result);

// "resnet18 pack W4A4: FP32 top-1 91.20 top-5 99.90 | quantized top-1 ..."
std::string summary_line(const QuantizeResult& result);

// "0.1.0": the version of the library, also in every report.
const char* packptq_version();

}  // namespace pk
