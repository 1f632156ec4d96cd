// `packptq eval` as one library call: top-1/top-5 of a float checkpoint, or
// of a quantized model file written by quantize(), on one split of an
// ImageFolder dataset, with the model's own preprocessing.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engine/settings.h"
#include "tools/data/evaluate.h"

namespace pk {

struct EvaluateConfig {
  std::string model_name, weights, model_config;  // a float checkpoint, or
  std::string quantized;                          // a quantized model file
  bool ema = false;  // load the float checkpoint's EMA copy of the weights
  std::string dataset_path, split = "val";
  // A quantized model's file holds its run's batch size and preprocessing;
  // they apply unless given here, so that the run's top-1 is reproduced
  // exactly on the same images in the same batches.
  int64_t batch_size = 64;
  bool reference_preprocessing = false;
  int64_t threads = 0;  // 0: all cores
  std::string report_json;
  std::set<std::string> given;  // settings given explicitly (by name)
};

using EvaluateSetting = Setting<EvaluateConfig>;
const std::vector<EvaluateSetting>& evaluate_settings();  // in --help order

// Throws ConfigError with the command line's message for the first invalid
// setting.
void validate(const EvaluateConfig& config);

struct EvaluateResult {
  std::string model_name;
  int64_t batch_size = 0;  // as used
  int threads = 0;
  data::EvalResult accuracy;
};

// validate(config), sets the CPU thread count, loads the model and
// evaluates it; writes report_to_json() to report_json when set.
EvaluateResult evaluate_model(const EvaluateConfig& config);

nlohmann::json report_to_json(const EvaluateConfig& config, const EvaluateResult& result);

}  // namespace pk
