#include "quant/evaluate_run.h"

#include <memory>

#include "engine/log.h"
#include "engine/output_files.h"
#include "engine/parallel.h"
#include "nets/load_model.h"
#include "quant/model_io.h"

namespace pk {

namespace {

std::vector<EvaluateSetting> make_settings() {
  using C = EvaluateConfig;
  return {
      setting_field("model_name", &C::model_name,
                    "architecture (required unless --quantized): " + model_names_text()),
      setting_field("weights", &C::weights,
                    "checkpoint (required unless --quantized): torch.save file (.pth, .pth.tar) or "
                    ".safetensors"),
      setting_field("model_config", &C::model_config,
                    "config.json with the settings that differ from --model_name's standard ones"),
      setting_field("ema", &C::ema,
                    "load the EMA copy of the weights from a training checkpoint that holds one "
                    "(state_dict_ema, model_ema)"),
      setting_field("dataset_path", &C::dataset_path,
                    "ImageFolder root holding <split>/<class>/*.jpg (required)"),
      setting_field("split", &C::split, "subfolder of --dataset_path to evaluate", check_not_empty),
      setting_field(
          "quantized", &C::quantized,
          "quantized model file from packptq quantize (trained_models/ or inited_models/)"),
      setting_field("batch_size", &C::batch_size,
                    "images per forward pass (--quantized: the quantization run's, unless given)",
                    check_positive),
      setting_field("threads", &C::threads, "CPU threads, 0 = all cores ($PACKPTQ_THREADS)",
                    check_thread_count),
      setting_field("report_json", &C::report_json, "also write the results to this JSON file"),
      setting_field(
          "reference_preprocessing", &C::reference_preprocessing,
          "the reference's evaluation preprocessing (ImageNet mean/std, resize to input/0.875, "
          "center crop, bilinear); --quantized: as its quantization run"),
  };
}

}  // namespace

const std::vector<EvaluateSetting>& evaluate_settings() {
  static const std::vector<EvaluateSetting> settings = make_settings();
  return settings;
}

void validate(const EvaluateConfig& config) {
  auto require = [](const std::string& value, const std::string& name) {
    if (value.empty()) throw ConfigError("--" + name + " is required (see --help)");
  };
  if (config.quantized.empty()) {
    require(config.model_name, "model_name");
    require(config.weights, "weights");
  } else {
    for (const auto& [name, value] :
         {std::pair<std::string, std::string>{"model_name", config.model_name},
          {"weights", config.weights},
          {"model_config", config.model_config}})
      if (!value.empty() || config.given.count(name))
        throw ConfigError("--" + name +
                          " cannot be combined with --quantized, whose file holds "
                          "the model");
    if (config.ema)
      throw ConfigError("--ema cannot be combined with --quantized, whose file holds the model");
  }
  require(config.dataset_path, "dataset_path");
  for (const EvaluateSetting& setting : evaluate_settings())
    if (setting.check) setting.check(config);
  if (!config.report_json.empty()) check_output_folder(config.report_json, "report_json");
}

EvaluateResult evaluate_model(const EvaluateConfig& config) {
  validate(config);
  set_num_threads(static_cast<int>(config.threads));
  EvaluateResult result;
  result.batch_size = config.batch_size;
  result.threads = num_threads();
  bool reference_preprocessing = config.reference_preprocessing;
  std::shared_ptr<Net> net;
  if (config.quantized.empty()) {
    net = load_model(config.model_name, config.model_config, config.weights, config.ema);
  } else {
    // The layers own their quantizer hooks, so the net alone is the quantized model.
    const LoadedQuantModel loaded = load_quantized_model(config.quantized);
    net = loaded.net;
    if (!config.given.count("batch_size") && loaded.metadata.contains("eval_batch_size"))
      result.batch_size = loaded.metadata["eval_batch_size"].get<int64_t>();
    reference_preprocessing =
        reference_preprocessing || loaded.metadata.value("reference_preprocessing", false);
  }
  result.model_name = net->model_name();
  const data::ImageFolder folder = data::scan_image_folder(config.dataset_path, config.split);
  data::check_class_count(folder, *net);
  const data::PreprocessConfig preprocess =
      data::preprocess_config(net->preprocess(), reference_preprocessing);
  log_line("eval " + result.model_name + " (" +
           (config.quantized.empty() ? config.weights : config.quantized) + ") on " +
           folder.directory + ": " + std::to_string(folder.samples.size()) + " images, " +
           std::to_string(result.threads) + " threads, input " +
           std::to_string(preprocess.input_size) + " px");
  result.accuracy = data::evaluate(*net, folder.samples, preprocess, result.batch_size,
                                   "eval " + result.model_name);
  if (!config.report_json.empty())
    write_json_atomic(config.report_json, report_to_json(config, result));
  return result;
}

nlohmann::json report_to_json(const EvaluateConfig& config, const EvaluateResult& result) {
  const data::EvalResult& a = result.accuracy;
  return {{"model_name", result.model_name},
          {"weights", config.weights},
          {"quantized", config.quantized},
          {"model_config", config.model_config},
          {"ema", config.ema},
          {"dataset", config.dataset_path},
          {"split", config.split},
          {"images", a.images},
          {"top1", a.top1},
          {"top5", a.top5},
          {"images_per_second", a.images_per_second()},
          {"seconds", a.seconds},
          {"batch_size", result.batch_size},
          {"threads", result.threads}};
}

}  // namespace pk
