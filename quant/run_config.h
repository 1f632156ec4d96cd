// Every setting of a quantization run (`packptq quantize` or quantize() in
// quant/run.h) as one typed struct with the reference implementation's
// defaults, and the table that names each field once: the command line's
// flags, their help, the run's stored configuration and the report all come
// from quantize_settings() (engine/settings.h).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engine/settings.h"
#include "kernels/kernels.h"
#include "quant/pipeline.h"

namespace pk {

// Integers are int64_t so that an out-of-range value reaches validate()
// unchanged and is refused as given.
struct QuantizeConfig {
  // Data and model.
  std::string dataset_path;           // ImageFolder root with train/ and val/
  std::string model_name;             // one of model_names()
  std::string weights;                // FP32 checkpoint
  std::string model_config;           // config.json overriding the standard architecture
  bool ema = false;                   // load the checkpoint's EMA copy of the weights
  std::string pretrained_model_path;  // an initialized model to resume from (inited_models/)
  // An interrupted run to continue: its output folder or a checkpoint file
  // (quant/run_checkpoint.h). The run's settings come from the checkpoint;
  // those given here must match them, except where the files go.
  std::string resume;
  int64_t batch_size = 16;
  int64_t calibration_samples = 1024;
  int64_t seed = 1005;
  int64_t num_workers = 4;  // accepted for the reference's command lines

  // Quantizers.
  int64_t weight_bits = 3, activation_bits = 3;
  bool weight_channel_wise = false, activation_channel_wise = false;
  bool enable_mixed_precision = false;
  InitMethod weight_init_method = InitMethod::Mse, activation_init_method = InitMethod::Mse;
  bool first_last_8bit = false;
  bool fold_bn = false;

  // Reconstruction (docs/METHOD.md section 6).
  Method method = Method::Pack;
  int64_t calibration_iterations = 20000;
  double reconstruction_weight = 0.01;
  double temperature_start = 20, temperature_end = 2;
  double warmup_ratio = 0.2;
  double learning_rate = 4e-5;
  double input_stochastic_prob = 0.5;
  bool keep_soft_rounding = false;
  // Accepted and validated but unused, as in the reference, whose
  // reconstruction never reads them.
  double stochastic_prob = 0.5, rounding_regularization = 0.1, distillation_temperature = 4.0,
         bn_learning_rate = 1e-3, cross_layer_regularization = 0.02;

  // Where and how it runs.
  bool reference_preprocessing = false;
  Device device = Device::CPU;
  int64_t threads = 0;  // 0: all cores
  std::string output_dir = ".";
  std::string report_json;  // empty: no report file
  std::string report_html;  // empty: beside the log, with its name
  int64_t analysis_images = 32;  // validation images of the per-layer error analysis

  // Settings given explicitly (by name). With pretrained_model_path, the
  // quantization settings come from the file and those given here must
  // agree with it; the others take the file's values.
  std::set<std::string> given;

  QuantSettings quant_settings() const;
  ReconOptions recon_options() const;
  PipelineOptions pipeline_options() const;
};

using ConfigSetting = Setting<QuantizeConfig>;

// In --help order.
const std::vector<ConfigSetting>& quantize_settings();

// Every setting by name, as stored in a run's log and report.
nlohmann::json config_to_json(const QuantizeConfig& config);

// Throws ConfigError with the message the command line prints for the first
// invalid setting: a missing required path, a value out of range, a
// combination that cannot run, an output folder that cannot be written, a
// device that is not there.
void validate(const QuantizeConfig& config);

}  // namespace pk
