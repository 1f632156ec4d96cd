#include "quant/run_config.h"

#include <filesystem>

#include "engine/errors.h"
#include "engine/output_files.h"

namespace pk {

namespace fs = std::filesystem;
using nlohmann::json;

// The enumerations' names on the command line and in JSON.
template <>
struct SettingCodec<Method> {
  static constexpr SettingKind kind = SettingKind::Text;
  static json get(Method value) { return method_name(value); }
  static Method set(const json& value, const std::string&) {
    try {
      return parse_method(value.get<std::string>());
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
  }
};
template <>
struct SettingCodec<InitMethod> {
  static constexpr SettingKind kind = SettingKind::Text;
  static json get(InitMethod value) { return init_method_name(value); }
  static InitMethod set(const json& value, const std::string& name) {
    try {
      return parse_init_method(value.get<std::string>());
    } catch (const std::invalid_argument& e) {
      throw ConfigError("--" + name + ": " + e.what());
    }
  }
};
template <>
struct SettingCodec<Device> {
  static constexpr SettingKind kind = SettingKind::Text;
  static json get(Device value) { return value == Device::CPU ? "cpu" : "cuda"; }
  static Device set(const json& value, const std::string&) {
    const std::string name = value.get<std::string>();
    if (name == "cpu") return Device::CPU;
    if (name == "cuda") return Device::CUDA;
    throw ConfigError("--device must be cpu or cuda, got '" + name + "'");
  }
};

namespace {

void bit_width(const std::string& name, const int64_t& value) {
  if (value < 2 || value > 8)
    throw ConfigError("--" + name + " must be 2..8, got " + std::to_string(value));
}

std::vector<ConfigSetting> make_settings() {
  using C = QuantizeConfig;
  const std::string unused = "accepted, unused (unused by the reference too)";
  return {
      // The reference's flags, with its defaults.
      setting_field("dataset_path", &C::dataset_path,
                    "ImageFolder root: train/<class>/*.jpg (calibration), val/<class>/*.jpg "
                    "(evaluation) (required)"),
      setting_field(
          "model_name", &C::model_name,
          "architecture (required unless --pretrained_model_path): " + model_names_text()),
      setting_field("batch_size", &C::batch_size,
                    "images per batch: initialization, scoring, reconstruction and evaluation",
                    check_at_least_one),
      setting_field("calibration_samples", &C::calibration_samples,
                    "calibration images drawn from train/", check_at_least_one),
      setting_field("seed", &C::seed, "seed of the calibration draw and of reconstruction",
                    check_not_negative),
      setting_field(
          "num_workers", &C::num_workers,
          "accepted for the reference's command lines; images decode on --threads threads",
          check_not_negative),
      setting_field(
          "pretrained_model_path", &C::pretrained_model_path,
          "resume from an initialized model in inited_models/: restores its quantizers and "
          "skips initialization"),
      setting_field("resume", &C::resume,
                    "continue an interrupted run from its last finished reconstruction target: "
                    "its --output_dir (the newest checkpoints/*.safetensors) or a checkpoint "
                    "file; the other flags may be left out, and those given must be the run's"),
      setting_field("weight_bits", &C::weight_bits, "weight bits, 2..8", bit_width),
      setting_field("activation_bits", &C::activation_bits, "activation bits, 2..8", bit_width),
      setting_field("weight_channel_wise", &C::weight_channel_wise,
                    "per-output-channel weight quantizers"),
      setting_field("activation_channel_wise", &C::activation_channel_wise,
                    "per-channel activation quantizers"),
      setting_field(
          "enable_mixed_precision", &C::enable_mixed_precision,
          "pack-wise mixed precision (needs equal weight and activation bits: 3, 4 or 6)"),
      setting_field("calibration_iterations", &C::calibration_iterations,
                    "reconstruction iterations per unit or pack"),  // checked with --method
      setting_field("reconstruction_weight", &C::reconstruction_weight,
                    "weight of the AdaRound rounding loss", check_not_negative_number),
      setting_field("temperature_start", &C::temperature_start,
                    "rounding loss exponent beta at the start", check_positive_number),
      setting_field("temperature_end", &C::temperature_end,
                    "rounding loss exponent beta at the end", check_positive_number),
      setting_field("warmup_ratio", &C::warmup_ratio, "share of iterations without rounding loss",
                    check_probability),
      setting_field("weight_init_method", &C::weight_init_method,
                    "weight quantizer init: minmax, minmax_scale, mse"),
      setting_field("activation_init_method", &C::activation_init_method,
                    "activation quantizer init: minmax, minmax_scale, mse"),
      setting_field("learning_rate", &C::learning_rate,
                    "Adam learning rate of the activation scales (cosine)",
                    check_not_negative_number),
      setting_field("input_stochastic_prob", &C::input_stochastic_prob,
                    "probability of the quantized input per element when packs mix inputs (QDrop)",
                    check_probability),
      setting_field("stochastic_prob", &C::stochastic_prob, unused, check_probability),
      setting_field("rounding_regularization", &C::rounding_regularization, unused,
                    check_not_negative_number),
      setting_field("distillation_temperature", &C::distillation_temperature, unused,
                    check_positive_number),
      setting_field("bn_learning_rate", &C::bn_learning_rate, unused, check_not_negative_number),
      setting_field("cross_layer_regularization", &C::cross_layer_regularization, unused,
                    check_not_negative_number),
      // packptq's own.
      setting_field(
          "weights", &C::weights,
          "FP32 checkpoint, .pth or .safetensors (required unless --pretrained_model_path)"),
      setting_field("model_config", &C::model_config,
                    "config.json with the settings that differ from --model_name's standard ones"),
      setting_field("ema", &C::ema,
                    "load the EMA copy of the weights from a training checkpoint that holds one "
                    "(state_dict_ema, model_ema)"),
      setting_field("method", &C::method, "pack, qdrop, brecq, adaround or rtn"),
      setting_field("device", &C::device, "cpu or cuda"),
      setting_field("threads", &C::threads, "CPU threads, 0 = all cores ($PACKPTQ_THREADS)",
                    check_thread_count),
      setting_field("output_dir", &C::output_dir,
                    "folder of the log, inited_models/ and trained_models/"),
      setting_field("report_json", &C::report_json,
                    "also write the run's results to this JSON file"),
      setting_field("first_last_8bit", &C::first_last_8bit,
                    "pin the first and the last quantized layer to 8 bits"),
      setting_field("reference_preprocessing", &C::reference_preprocessing,
                    "the reference's preprocessing for every model: ImageNet mean/std, resize to "
                    "input/0.875 and center crop, bilinear; calibration images augmented with "
                    "RandomResizedCrop and horizontal flips (off: each model's own preprocessing)"),
      setting_field("fold_bn", &C::fold_bn,
                    "fold each BatchNorm into the conv before it, so weights are quantized folded "
                    "(off: BatchNorm stays a float op, as in the reference)"),
      setting_field("keep_soft_rounding", &C::keep_soft_rounding,
                    "reconstructed units keep their soft AdaRound rounding while later units are "
                    "reconstructed, as in the reference; all are set to hard rounding at the end "
                    "(off: each unit is fixed to hard rounding when it is done)"),
      setting_field("report_html", &C::report_html,
                    "write the run's HTML report here instead of beside its log"),
      setting_field("analysis_images", &C::analysis_images,
                    "validation images of the report's per-layer error analysis (0: none)",
                    check_not_negative),
  };
}

}  // namespace

QuantSettings QuantizeConfig::quant_settings() const {
  QuantSettings s;
  s.weight_bits = static_cast<int>(weight_bits);
  s.activation_bits = static_cast<int>(activation_bits);
  s.weight_channel_wise = weight_channel_wise;
  s.activation_channel_wise = activation_channel_wise;
  s.weight_init = weight_init_method;
  s.activation_init = activation_init_method;
  return s;
}

ReconOptions QuantizeConfig::recon_options() const {
  ReconOptions r;
  r.iterations = calibration_iterations;
  r.batch_size = batch_size;
  r.round_weight = reconstruction_weight;
  r.beta_start = temperature_start;
  r.beta_end = temperature_end;
  r.warmup = warmup_ratio;
  r.scale_lr = learning_rate;
  r.input_prob = input_stochastic_prob;
  r.keep_soft_rounding = keep_soft_rounding;
  return r;
}

PipelineOptions QuantizeConfig::pipeline_options() const {
  PipelineOptions p;
  p.method = method;
  p.mixed_precision = enable_mixed_precision;
  p.batch_size = batch_size;
  p.recon = recon_options();
  return p;
}

const std::vector<ConfigSetting>& quantize_settings() {
  static const std::vector<ConfigSetting> settings = make_settings();
  return settings;
}

json config_to_json(const QuantizeConfig& config) {
  return settings_to_json(quantize_settings(), config);
}

void validate(const QuantizeConfig& config) {
  if (config.dataset_path.empty()) throw ConfigError("--dataset_path is required (see --help)");
  if (config.pretrained_model_path.empty()) {
    if (config.model_name.empty()) throw ConfigError("--model_name is required (see --help)");
    if (config.weights.empty())
      throw ConfigError("--weights is required unless --pretrained_model_path gives the model");
  } else if (!config.weights.empty() || !config.model_config.empty()) {
    throw ConfigError(
        "--weights and --model_config cannot be combined with "
        "--pretrained_model_path, whose file holds the model");
  } else if (config.ema) {
    throw ConfigError(
        "--ema cannot be combined with --pretrained_model_path, whose file holds the model");
  }
  for (const ConfigSetting& setting : quantize_settings())
    if (setting.check) setting.check(config);

  if (config.method != Method::Rtn && config.calibration_iterations < 1)
    throw ConfigError("--calibration_iterations must be at least 1 (or --method rtn), got " +
                      std::to_string(config.calibration_iterations));
  if (config.enable_mixed_precision) {
    const int64_t w = config.weight_bits, a = config.activation_bits;
    if (w != a || (w != 3 && w != 4 && w != 6))
      throw ConfigError(
          "--enable_mixed_precision needs --weight_bits equal to --activation_bits, "
          "3, 4 or 6; got " +
          std::to_string(w) + " and " + std::to_string(a));
    if (config.first_last_8bit)
      throw ConfigError(
          "--first_last_8bit cannot be combined with --enable_mixed_precision, "
          "which gives the first and last layers the high bit width");
  }
  if (config.output_dir.empty()) throw ConfigError("--output_dir must not be empty");
  if (fs::exists(config.output_dir) && !fs::is_directory(config.output_dir))
    throw ConfigError("--output_dir " + config.output_dir + " is not a folder");
  // A report may go into --output_dir, which the run creates itself.
  for (const auto& [path, setting] :
       {std::pair<std::string, std::string>{config.report_json, "report_json"},
        {config.report_html, "report_html"}}) {
    const fs::path folder = fs::path(path).parent_path();
    const bool in_output_dir =
        !folder.empty() && fs::weakly_canonical(folder) == fs::weakly_canonical(config.output_dir);
    if (!path.empty() && !in_output_dir) check_output_folder(path, setting);
  }
  // Last: it needs the driver, and says why a GPU cannot be used.
  if (config.device == Device::CUDA && !device_available(Device::CUDA)) backend(Device::CUDA);
}

}  // namespace pk
