// `packptq export` as one library call: a quantized model file, or a float
// checkpoint, written as an ONNX model (quant/onnx/onnx_export.h).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "engine/settings.h"
#include "quant/onnx/onnx_export.h"

namespace pk {

struct ExportConfig {
  std::string quantized;                          // a quantized model file, or
  std::string model_name, weights, model_config;  // a float checkpoint
  bool ema = false;  // load the float checkpoint's EMA copy of the weights
  std::string onnx;  // the ONNX file to write
  std::set<std::string> given;  // settings given explicitly (by name)
};

using ExportSetting = Setting<ExportConfig>;
const std::vector<ExportSetting>& export_settings();  // in --help order

// Throws ConfigError with the command line's message for the first invalid
// setting (a missing or conflicting source, no --onnx, an --onnx folder
// that does not exist).
void validate(const ExportConfig& config);

// validate(config), loads the model and exports it. The metadata entry
// "packptq" holds what the file is: for a quantized model its file's
// description (model, settings, per-layer bits, packs, accuracies), for a
// float checkpoint the model name, checkpoint and config.
OnnxExportResult export_model(const ExportConfig& config);

// The quantized model file `quantized` (as a quantization run writes it) as
// the ONNX file `onnx`: export_model() with just these two settings.
OnnxExportResult export_quantized_file(const std::string& quantized, const std::string& onnx);

}  // namespace pk
