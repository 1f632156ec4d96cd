#include "quant/onnx/export_run.h"

#include <filesystem>

#include "engine/errors.h"
#include "engine/output_files.h"
#include "nets/load_model.h"
#include "quant/model_io.h"

namespace pk {

namespace {

std::vector<ExportSetting> make_settings() {
  using C = ExportConfig;
  return {
      setting_field("quantized", &C::quantized,
                    "quantized model file from packptq quantize (trained_models/ or "
                    "inited_models/)"),
      setting_field("model_name", &C::model_name,
                    "architecture of a float checkpoint (instead of --quantized): " +
                        model_names_text()),
      setting_field("weights", &C::weights,
                    "float checkpoint (with --model_name): torch.save file (.pth, .pth.tar) or "
                    ".safetensors"),
      setting_field("model_config", &C::model_config,
                    "config.json with the settings that differ from --model_name's standard ones"),
      setting_field("ema", &C::ema, "load the EMA copy of the float checkpoint's weights"),
      setting_field("onnx", &C::onnx, "the ONNX file to write (required)"),
  };
}

}  // namespace

const std::vector<ExportSetting>& export_settings() {
  static const std::vector<ExportSetting> settings = make_settings();
  return settings;
}

void validate(const ExportConfig& config) {
  if (config.quantized.empty()) {
    if (config.model_name.empty() || config.weights.empty())
      throw ConfigError("give --quantized FILE, or --model_name with --weights (see --help)");
  } else {
    for (const char* name : {"model_name", "weights", "model_config", "ema"})
      if (config.given.count(name))
        throw ConfigError(std::string("--") + name +
                          " cannot be combined with --quantized, whose file holds the model");
  }
  if (config.onnx.empty()) throw ConfigError("--onnx is required (see --help)");
  check_output_folder(config.onnx, "onnx");
}

OnnxExportResult export_model(const ExportConfig& config) {
  validate(config);
  namespace fs = std::filesystem;
  if (!config.quantized.empty()) {
    LoadedQuantModel loaded = load_quantized_model(config.quantized);
    nlohmann::json description = loaded.metadata;
    description["source"] = fs::path(config.quantized).filename().string();
    return export_onnx(*loaded.model, config.onnx, description,
                       loaded.metadata.value("reference_preprocessing", false));
  }
  std::shared_ptr<Net> net =
      load_model(config.model_name, config.model_config, config.weights, config.ema);
  nlohmann::json description = {
      {"model_name", config.model_name},
      {"source", fs::path(config.weights).filename().string()},
      {"stage", "float"},
      {"model_config", config.model_config.empty()
                           ? nlohmann::json::object()
                           : read_model_config(config.model_config, config.model_name)}};
  return export_onnx(*net, config.onnx, description);
}

OnnxExportResult export_quantized_file(const std::string& quantized, const std::string& onnx) {
  ExportConfig config;
  config.quantized = quantized;
  config.onnx = onnx;
  return export_model(config);
}

}  // namespace pk
