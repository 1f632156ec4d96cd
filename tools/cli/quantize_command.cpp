// packptq [quantize]: the Pack-PTQ run (ALGORITHM.md sections 4-8) on an
// ImageFolder dataset: FP32 evaluation on val/, quantizer initialization on
// calibration images from train/, Hessian packing, reconstruction, quantized
// evaluation. Outputs, named after the run's start time:
//   {output_dir}/{timestamp}_{model}_w{w}_a{a}[_mixed_precision].log
//   {output_dir}/inited_models/{timestamp}_{model}_w{w}_a{a}.safetensors
//   {output_dir}/trained_models/{timestamp}_{model}_w{w}_a{a}.safetensors
// and, with --report_json, a JSON report that is identical for two runs with
// the same flags (seed and threads included) except its "timing" object,
// which holds every wall-clock value.
//
// Flags keep the reference CLI's names and defaults. --num_workers is
// accepted for its command lines; image decoding runs on the --threads
// threads. --stochastic_prob, --rounding_regularization,
// --distillation_temperature, --bn_learning_rate and
// --cross_layer_regularization are accepted and validated but unused, as in
// the reference, whose reconstruction never reads them.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "engine/log.h"
#include "engine/parallel.h"
#include "nets/fold_bn.h"
#include "quant/model_io.h"
#include "quant/pipeline.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"

namespace pk::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void declare_flags(FlagSet& flags) {
  std::string names;
  for (const auto& name : model_names()) names += (names.empty() ? "" : ", ") + name;
  // The reference's flags, with its defaults.
  flags.add_string("dataset_path", "",
                   "ImageFolder root: train/<class>/*.jpg (calibration), val/<class>/*.jpg "
                   "(evaluation) (required)");
  flags.add_string("model_name", "",
                   "architecture (required unless --pretrained_model_path): " + names);
  flags.add_int("batch_size", 16,
                "images per batch: initialization, scoring, reconstruction and evaluation");
  flags.add_int("calibration_samples", 1024, "calibration images drawn from train/");
  flags.add_int("seed", 1005, "seed of the calibration draw and of reconstruction");
  flags.add_int("num_workers", 4,
                "accepted for the reference's command lines; images decode on --threads threads");
  flags.add_string("pretrained_model_path", "",
                   "resume from an initialized model in inited_models/: restores its quantizers "
                   "and skips initialization");
  flags.add_int("weight_bits", 3, "weight bits, 2..8");
  flags.add_int("activation_bits", 3, "activation bits, 2..8");
  flags.add_switch("weight_channel_wise", "per-output-channel weight quantizers");
  flags.add_switch("activation_channel_wise", "per-channel activation quantizers");
  flags.add_switch("enable_mixed_precision",
                   "pack-wise mixed precision (needs equal weight and activation bits: 3, 4 or 6)");
  flags.add_int("calibration_iterations", 20000, "reconstruction iterations per unit or pack");
  flags.add_float("reconstruction_weight", 0.01, "weight of the AdaRound rounding loss");
  flags.add_float("temperature_start", 20, "rounding loss exponent beta at the start");
  flags.add_float("temperature_end", 2, "rounding loss exponent beta at the end");
  flags.add_float("warmup_ratio", 0.2, "share of iterations without rounding loss");
  flags.add_string("weight_init_method", "mse", "weight quantizer init: minmax, minmax_scale, mse");
  flags.add_string("activation_init_method", "mse",
                   "activation quantizer init: minmax, minmax_scale, mse");
  flags.add_float("learning_rate", 4e-5, "Adam learning rate of the activation scales (cosine)");
  flags.add_float("input_stochastic_prob", 0.5,
                  "probability of the quantized input per element when packs mix inputs (QDrop)");
  flags.add_float("stochastic_prob", 0.5, "accepted, unused (unused by the reference too)");
  flags.add_float("rounding_regularization", 0.1, "accepted, unused (unused by the reference too)");
  flags.add_float("distillation_temperature", 4.0, "accepted, unused (unused by the reference too)");
  flags.add_float("bn_learning_rate", 1e-3, "accepted, unused (unused by the reference too)");
  flags.add_float("cross_layer_regularization", 0.02,
                  "accepted, unused (unused by the reference too)");
  // packptq's own.
  flags.add_string("weights", "",
                   "FP32 checkpoint, .pth or .safetensors (required unless --pretrained_model_path)");
  flags.add_string("model_config", "",
                   "config.json with the settings that differ from --model_name's standard ones");
  flags.add_string("method", "pack", "pack, qdrop, brecq, adaround or rtn");
  flags.add_string("device", "cpu", "cpu or cuda");
  flags.add_int("threads", threads_from_env(), "CPU threads, 0 = all cores ($PACKPTQ_THREADS)");
  flags.add_string("output_dir", ".", "folder of the log, inited_models/ and trained_models/");
  flags.add_string("report_json", "", "also write the run's results to this JSON file");
  flags.add_switch("first_last_8bit", "pin the first and the last quantized layer to 8 bits");
  flags.add_switch("reference_preprocessing",
                   "the reference's preprocessing for every model: ImageNet mean/std, resize to "
                   "input/0.875 and center crop, bilinear; calibration images augmented with "
                   "RandomResizedCrop and horizontal flips (off: each model's own preprocessing)");
  flags.add_switch("fold_bn",
                   "fold each BatchNorm into the conv before it, so weights are quantized "
                   "folded (off: BatchNorm stays a float op, as in the reference)");
  flags.add_switch("keep_soft_rounding",
                   "reconstructed units keep their soft AdaRound rounding while later units are "
                   "reconstructed, as in the reference; all are set to hard rounding at the end "
                   "(off: each unit is fixed to hard rounding when it is done)");
}

struct Options {
  std::string dataset_path, model_name, weights, model_config, pretrained_model_path;
  std::string output_dir, report_json;
  int64_t batch_size, calibration_samples, num_workers, threads;
  uint64_t seed;
  QuantSettings quant;
  bool first_last_8bit, mixed_precision, fold_bn, reference_preprocessing;
  Method method;
  Device device;
  ReconOptions recon;
  // Accepted, validated, unused (see the file comment).
  double stochastic_prob, rounding_regularization, distillation_temperature, bn_learning_rate,
      cross_layer_regularization;
};

std::string number(double value) {
  std::ostringstream os;
  os << value;
  return os.str();
}

int64_t positive(const FlagSet& flags, const std::string& name) {
  const int64_t value = flags.integer(name);
  if (value < 1) throw UsageError("--" + name + " must be at least 1, got " + std::to_string(value));
  return value;
}

int bits(const FlagSet& flags, const std::string& name) {
  const int64_t value = flags.integer(name);
  if (value < 2 || value > 8) throw UsageError("--" + name + " must be 2..8, got " + std::to_string(value));
  return static_cast<int>(value);
}

double probability(const FlagSet& flags, const std::string& name) {
  const double value = flags.number(name);
  if (!(value >= 0.0 && value <= 1.0))
    throw UsageError("--" + name + " must be in [0, 1], got " + number(value));
  return value;
}

double at_least(const FlagSet& flags, const std::string& name, double low, bool inclusive) {
  const double value = flags.number(name);
  if (!(inclusive ? value >= low : value > low))
    throw UsageError("--" + name + " must be " + (inclusive ? "at least " : "greater than ") +
                     number(low) + ", got " + number(value));
  return value;
}

InitMethod init_method(const FlagSet& flags, const std::string& name) {
  try {
    return parse_init_method(flags.str(name));
  } catch (const std::invalid_argument& e) {
    throw UsageError("--" + name + ": " + e.what());
  }
}

Options parse_options(const FlagSet& flags) {
  Options opt;
  opt.dataset_path = flags.str("dataset_path");
  opt.model_name = flags.str("model_name");
  opt.weights = flags.str("weights");
  opt.model_config = flags.str("model_config");
  opt.pretrained_model_path = flags.str("pretrained_model_path");
  opt.output_dir = flags.str("output_dir");
  opt.report_json = flags.str("report_json");
  if (opt.dataset_path.empty()) throw UsageError("--dataset_path is required (see --help)");
  if (opt.pretrained_model_path.empty()) {
    if (opt.model_name.empty()) throw UsageError("--model_name is required (see --help)");
    if (opt.weights.empty())
      throw UsageError("--weights is required unless --pretrained_model_path gives the model");
  } else if (!opt.weights.empty() || !opt.model_config.empty()) {
    throw UsageError("--weights and --model_config cannot be combined with "
                     "--pretrained_model_path, whose file holds the model");
  }
  opt.fold_bn = flags.on("fold_bn");
  opt.reference_preprocessing = flags.on("reference_preprocessing");

  opt.batch_size = positive(flags, "batch_size");
  opt.calibration_samples = positive(flags, "calibration_samples");
  const int64_t seed = flags.integer("seed");
  if (seed < 0) throw UsageError("--seed must not be negative, got " + std::to_string(seed));
  opt.seed = static_cast<uint64_t>(seed);
  opt.num_workers = flags.integer("num_workers");
  if (opt.num_workers < 0)
    throw UsageError("--num_workers must not be negative, got " + std::to_string(opt.num_workers));
  opt.threads = flags.integer("threads");
  if (opt.threads < 0)
    throw UsageError("--threads must be 0 (all cores) or more, got " + std::to_string(opt.threads));

  opt.quant.weight_bits = bits(flags, "weight_bits");
  opt.quant.activation_bits = bits(flags, "activation_bits");
  opt.quant.weight_channel_wise = flags.on("weight_channel_wise");
  opt.quant.activation_channel_wise = flags.on("activation_channel_wise");
  opt.quant.weight_init = init_method(flags, "weight_init_method");
  opt.quant.activation_init = init_method(flags, "activation_init_method");
  opt.first_last_8bit = flags.on("first_last_8bit");
  opt.mixed_precision = flags.on("enable_mixed_precision");
  try {
    opt.method = parse_method(flags.str("method"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  const std::string device = flags.str("device");
  if (device == "cpu") {
    opt.device = Device::CPU;
  } else if (device == "cuda") {
    opt.device = Device::CUDA;
    if (!device_available(Device::CUDA)) backend(Device::CUDA);  // throws the reason
  } else {
    throw UsageError("--device must be cpu or cuda, got '" + device + "'");
  }

  ReconOptions& r = opt.recon;
  r.iterations = flags.integer("calibration_iterations");
  if (opt.method != Method::Rtn && r.iterations < 1)
    throw UsageError("--calibration_iterations must be at least 1 (or --method rtn), got " +
                     std::to_string(r.iterations));
  r.batch_size = opt.batch_size;
  r.round_weight = at_least(flags, "reconstruction_weight", 0.0, true);
  r.beta_start = at_least(flags, "temperature_start", 0.0, false);
  r.beta_end = at_least(flags, "temperature_end", 0.0, false);
  r.warmup = probability(flags, "warmup_ratio");
  r.scale_lr = at_least(flags, "learning_rate", 0.0, true);
  r.input_prob = probability(flags, "input_stochastic_prob");
  r.keep_soft_rounding = flags.on("keep_soft_rounding");
  opt.stochastic_prob = probability(flags, "stochastic_prob");
  opt.rounding_regularization = at_least(flags, "rounding_regularization", 0.0, true);
  opt.distillation_temperature = at_least(flags, "distillation_temperature", 0.0, false);
  opt.bn_learning_rate = at_least(flags, "bn_learning_rate", 0.0, true);
  opt.cross_layer_regularization = at_least(flags, "cross_layer_regularization", 0.0, true);

  if (opt.mixed_precision) {
    const int w = opt.quant.weight_bits, a = opt.quant.activation_bits;
    if (w != a || (w != 3 && w != 4 && w != 6))
      throw UsageError("--enable_mixed_precision needs --weight_bits equal to --activation_bits, "
                       "3, 4 or 6; got " + std::to_string(w) + " and " + std::to_string(a));
    if (opt.first_last_8bit)
      throw UsageError("--first_last_8bit cannot be combined with --enable_mixed_precision, "
                       "which gives the first and last layers the high bit width");
  }
  if (fs::exists(opt.output_dir) && !fs::is_directory(opt.output_dir))
    throw UsageError("--output_dir " + opt.output_dir + " is not a folder");
  // The report may go into --output_dir, which the run creates itself.
  const fs::path report_folder = fs::path(opt.report_json).parent_path();
  const bool report_in_output_dir =
      !report_folder.empty() &&
      fs::weakly_canonical(report_folder) == fs::weakly_canonical(opt.output_dir);
  if (!opt.report_json.empty() && !report_in_output_dir)
    check_output_folder(opt.report_json, "report_json");
  return opt;
}

// With --pretrained_model_path the quantization settings come from the file;
// flags given on the command line must agree with it.
void check_resume_flags(const FlagSet& flags, const Options& opt, const LoadedQuantModel& loaded,
                        const std::string& path) {
  if (!loaded.has_float_weights)
    throw UsageError("--pretrained_model_path " + path +
                     " holds no float weights (a trained model?); resuming needs an initialized "
                     "model from inited_models/");
  const QuantSettings& s = loaded.model->settings();
  auto disagree = [&](const std::string& flag, const std::string& in_file) {
    throw UsageError("--" + flag + " disagrees with --pretrained_model_path " + path + ", which has " +
                     in_file);
  };
  if (!opt.model_name.empty() && opt.model_name != loaded.net->model_name())
    disagree("model_name", loaded.net->model_name());
  if (flags.given("weight_bits") && opt.quant.weight_bits != s.weight_bits)
    disagree("weight_bits", std::to_string(s.weight_bits));
  if (flags.given("activation_bits") && opt.quant.activation_bits != s.activation_bits)
    disagree("activation_bits", std::to_string(s.activation_bits));
  if (opt.quant.weight_channel_wise && !s.weight_channel_wise)
    disagree("weight_channel_wise", "per-tensor weights");
  if (opt.quant.activation_channel_wise && !s.activation_channel_wise)
    disagree("activation_channel_wise", "per-tensor activations");
  if (flags.given("weight_init_method") && opt.quant.weight_init != s.weight_init)
    disagree("weight_init_method", init_method_name(s.weight_init));
  if (flags.given("activation_init_method") && opt.quant.activation_init != s.activation_init)
    disagree("activation_init_method", init_method_name(s.activation_init));
  const auto& layers = loaded.model->layers();
  if (opt.first_last_8bit &&
      (layers.front().hook->weight_bits != 8 || layers.back().hook->weight_bits != 8))
    disagree("first_last_8bit", "first and last layers below 8 bits");
  if (opt.fold_bn && !loaded.metadata.value("fold_bn", false))
    disagree("fold_bn", "BatchNorm not folded");
}

json config_json(const Options& opt) {
  const QuantSettings& q = opt.quant;
  const ReconOptions& r = opt.recon;
  return {{"dataset_path", opt.dataset_path},
          {"model_name", opt.model_name},
          {"weights", opt.weights},
          {"model_config", opt.model_config},
          {"pretrained_model_path", opt.pretrained_model_path},
          {"method", method_name(opt.method)},
          {"device", opt.device == Device::CPU ? "cpu" : "cuda"},
          {"threads", num_threads()},
          {"num_workers", opt.num_workers},
          {"batch_size", opt.batch_size},
          {"calibration_samples", opt.calibration_samples},
          {"seed", opt.seed},
          {"weight_bits", q.weight_bits},
          {"activation_bits", q.activation_bits},
          {"weight_channel_wise", q.weight_channel_wise},
          {"activation_channel_wise", q.activation_channel_wise},
          {"weight_init_method", init_method_name(q.weight_init)},
          {"activation_init_method", init_method_name(q.activation_init)},
          {"enable_mixed_precision", opt.mixed_precision},
          {"first_last_8bit", opt.first_last_8bit},
          {"fold_bn", opt.fold_bn},
          {"reference_preprocessing", opt.reference_preprocessing},
          {"calibration_iterations", r.iterations},
          {"reconstruction_weight", r.round_weight},
          {"temperature_start", r.beta_start},
          {"temperature_end", r.beta_end},
          {"warmup_ratio", r.warmup},
          {"learning_rate", r.scale_lr},
          {"input_stochastic_prob", r.input_prob},
          {"keep_soft_rounding", r.keep_soft_rounding},
          {"stochastic_prob", opt.stochastic_prob},
          {"rounding_regularization", opt.rounding_regularization},
          {"distillation_temperature", opt.distillation_temperature},
          {"bn_learning_rate", opt.bn_learning_rate},
          {"cross_layer_regularization", opt.cross_layer_regularization},
          {"output_dir", opt.output_dir},
          {"report_json", opt.report_json}};
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  return json::parse(in);
}

std::string start_timestamp() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d_%H%M%S", std::localtime(&now));
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Moves the quantizers' parameters along with a net moved to `device`.
void move_quantizers(QuantModel& model, Device device) {
  auto move = [device](UniformQuantizer& q) {
    if (!q.initialized()) return;
    q.scale = q.scale.to(device);
    q.zero_point = q.zero_point.to(device);
  };
  for (QuantLayer& layer : model.layers()) {
    if (layer.hook->weight_quantizer) move(*layer.hook->weight_quantizer);
    for (auto& q : layer.hook->operand_quantizers)
      if (q) move(*q);
  }
}

// Bits per element averaged over every quantized layer's weight and one
// sample's inputs, weighted as mixed precision weighs them (layer_cost).
double average_bits(QuantModel& model) {
  double bits = 0, elements = 0;
  for (const QuantLayer& layer : model.layers()) {
    const QuantHook& h = *layer.hook;
    bits += static_cast<double>(h.weight_numel) * h.weight_bits;
    for (int64_t n : h.operand_numel) bits += static_cast<double>(n) * h.activation_bits;
    elements += static_cast<double>(h.weight_numel);
    for (int64_t n : h.operand_numel) elements += static_cast<double>(n);
  }
  return elements > 0 ? bits / elements : 0.0;
}

json packs_json(QuantModel& model, const std::vector<Pack>& packs) {
  json out = json::array();
  for (const Pack& p : packs) {
    json units = json::array();
    for (int64_t u = p.first; u < p.last; ++u) units.push_back(model.net().units()[u].name);
    // Every layer of a pack has the pack's bits; read them off its first one.
    const QuantHook* first = nullptr;
    for (int64_t u = p.first; u < p.last && !first; ++u)
      if (!model.unit_layers(u).empty()) first = model.layers()[model.unit_layers(u).front()].hook.get();
    out.push_back({{"units", units},
                   {"score", p.score},
                   {"bits",
                    {{"weight", first ? first->weight_bits : 0},
                     {"activation", first ? first->activation_bits : 0}}}});
  }
  return out;
}

json units_json(const Net& net, const std::vector<UnitScore>& scores) {
  json out = json::array();
  for (const UnitScore& s : scores)
    out.push_back({{"name", net.units()[s.unit].name},
                   {"kind", unit_kind_name(net.units()[s.unit].kind)},
                   {"kl", s.kl},
                   {"hessian", s.hessian},
                   {"omega", s.omega}});
  return out;
}

int quantize_main(int argc, char** argv) {
  const auto run_start = std::chrono::steady_clock::now();
  FlagSet flags("packptq [quantize]");
  declare_flags(flags);
  if (!flags.parse(argc, argv, 1)) {
    std::cout << "Quantizes a model with Pack-PTQ (or a baseline --method) and evaluates it on "
                 "<dataset_path>/val.\n"
              << flags.help();
    return 0;
  }
  Options opt = parse_options(flags);
  set_num_threads(static_cast<int>(opt.threads));

  // The model: a checkpoint to quantize, or an initialized model to resume.
  std::shared_ptr<Net> net;
  std::unique_ptr<QuantModel> model;
  json model_config = json::object();
  const bool resumed = !opt.pretrained_model_path.empty();
  int64_t folded_batch_norms = 0;
  if (resumed) {
    LoadedQuantModel loaded = load_quantized_model(opt.pretrained_model_path);
    check_resume_flags(flags, opt, loaded, opt.pretrained_model_path);
    net = loaded.net;
    model = std::move(loaded.model);
    model_config = loaded.metadata.at("model_config");
    opt.model_name = net->model_name();
    opt.quant = model->settings();
    opt.fold_bn = loaded.metadata.value("fold_bn", false);  // the file's net is folded or not
  } else {
    net = load_model(opt.model_name, opt.model_config, opt.weights);
    if (!opt.model_config.empty()) model_config = read_json_file(opt.model_config);
    if (opt.fold_bn) folded_batch_norms = fold_batch_norms(*net);
    model = std::make_unique<QuantModel>(net, opt.quant, opt.first_last_8bit);
  }
  net->to(opt.device);
  move_quantizers(*model, opt.device);

  // The dataset is checked before anything is written: bad input leaves no files.
  auto start = std::chrono::steady_clock::now();
  const data::ImageFolder train = data::scan_image_folder(opt.dataset_path, "train");
  const data::ImageFolder val = data::scan_image_folder(opt.dataset_path, "val");
  check_class_count(train, *net);
  check_class_count(val, *net);
  // Both splits must name the same classes in the same order.
  for (size_t c = 0; c < train.classes.size(); ++c)
    if (train.classes[c] != val.classes[c])
      throw std::runtime_error("class folder " + std::to_string(c) + " is '" + train.classes[c] +
                               "' in " + train.directory + " but '" + val.classes[c] + "' in " +
                               val.directory + ": both splits need the same class folders");
  if (opt.calibration_samples > static_cast<int64_t>(train.samples.size()))
    throw UsageError("--calibration_samples " + std::to_string(opt.calibration_samples) +
                     " exceeds the " + std::to_string(train.samples.size()) + " images of " +
                     train.directory);

  const std::string timestamp = start_timestamp();
  const std::string run_name = timestamp + "_" + opt.model_name + "_w" +
                               std::to_string(opt.quant.weight_bits) + "_a" +
                               std::to_string(opt.quant.activation_bits);
  const fs::path output_dir(opt.output_dir);
  fs::create_directories(output_dir);
  const fs::path log_path =
      output_dir / (run_name + (opt.mixed_precision ? "_mixed_precision" : "") + ".log");
  open_log_file(log_path.string());
  const json config = config_json(opt);
  log_line("packptq quantize " + opt.model_name + ", configuration: " + config.dump());
  if (opt.fold_bn && !resumed)
    log_line("folded " + std::to_string(folded_batch_norms) +
             " BatchNorm2d layers into the convs before them");

  json timing = {{"started_at", timestamp}};
  const data::PreprocessConfig preprocess =
      data::preprocess_config(net->preprocess(), opt.reference_preprocessing);
  const std::vector<data::Sample> calibration_samples =
      data::sample_calibration(train.samples, opt.calibration_samples, opt.seed);
  const Tensor calibration =
      data::load_batch(
          calibration_samples, 0, calibration_samples.size(), preprocess,
          opt.reference_preprocessing ? std::optional<uint64_t>(opt.seed) : std::nullopt)
          .images.to(opt.device);
  log_line("calibration: " + std::to_string(calibration_samples.size()) + " images of " +
           train.directory + " (seed " + std::to_string(opt.seed) + "), input " +
           std::to_string(preprocess.input_size) + " px" +
           (opt.reference_preprocessing ? " (reference preprocessing, augmented)" : "") +
           "; evaluation: " + std::to_string(val.samples.size()) + " images of " + val.directory +
           "; " + std::to_string(num_threads()) + " threads");
  timing["data"] = seconds_since(start);

  model->set_quant(false, false);  // FP32 (a resumed model comes quantized)
  const EvalResult fp32 = evaluate(*net, val.samples, preprocess, opt.batch_size, "fp32 eval");
  timing["fp32_eval"] = fp32.seconds;

  json metadata = {{"model_config", model_config},
                   {"fold_bn", opt.fold_bn},
                   {"reference_preprocessing", opt.reference_preprocessing},
                   {"method", method_name(opt.method)},
                   {"seed", opt.seed},
                   {"mixed_precision", opt.mixed_precision},
                   {"eval_batch_size", opt.batch_size},
                   {"fp32_top1", fp32.top1},
                   {"fp32_top5", fp32.top5}};
  PipelineOptions pipeline;
  pipeline.method = opt.method;
  pipeline.mixed_precision = opt.mixed_precision;
  pipeline.batch_size = opt.batch_size;
  pipeline.recon = opt.recon;
  Generator gen(opt.seed);
  const PipelineReport report =
      run_pipeline(*model, calibration, pipeline, gen, resumed, [&](QuantModel& initialized) {
        if (resumed) return;  // its initialized model is the file it came from
        const fs::path folder = output_dir / "inited_models";
        fs::create_directories(folder);
        const fs::path path = folder / (run_name + ".safetensors");
        json inited = metadata;
        inited["stage"] = "initialized";
        save_quantized_model(path.string(), initialized, inited, /*with_float_weights=*/true);
        log_line("saved the initialized model to " + path.string());
      });
  timing["init"] = report.phase_seconds.at("init");
  timing["scoring"] = report.phase_seconds.count("scoring") ? report.phase_seconds.at("scoring") : 0.0;
  timing["reconstruction"] = report.phase_seconds.at("reconstruction");
  json unit_seconds = json::object();
  json reconstruction = json::array();
  for (const ReconResult& r : report.reconstruction) {
    reconstruction.push_back({{"name", r.name}, {"final_loss", r.final_loss}});
    unit_seconds[r.name] = r.seconds;
  }
  timing["reconstruction_units"] = unit_seconds;

  const EvalResult quantized =
      evaluate(*net, val.samples, preprocess, opt.batch_size, "quantized eval");
  timing["quant_eval"] = quantized.seconds;

  const json packs = packs_json(*model, report.packs);
  const double avg_bits = average_bits(*model);
  start = std::chrono::steady_clock::now();
  const fs::path trained_folder = output_dir / "trained_models";
  fs::create_directories(trained_folder);
  const fs::path trained_path = trained_folder / (run_name + ".safetensors");
  json trained = metadata;
  trained["stage"] = "trained";
  trained["keep_soft_rounding"] = opt.recon.keep_soft_rounding;
  trained["quant_top1"] = quantized.top1;
  trained["quant_top5"] = quantized.top5;
  trained["packs"] = packs;
  trained["average_bits"] = avg_bits;
  save_quantized_model(trained_path.string(), *model, trained, /*with_float_weights=*/false);
  log_line("saved the quantized model to " + trained_path.string());
  timing["save"] = seconds_since(start);
  timing["total"] = seconds_since(run_start);

  if (!opt.report_json.empty()) {
    json out = {{"model_name", opt.model_name},
                {"method", method_name(opt.method)},
                {"weight_bits", opt.quant.weight_bits},
                {"activation_bits", opt.quant.activation_bits},
                {"mixed_precision", opt.mixed_precision},
                {"seed", opt.seed},
                {"config", config},
                {"val_images", fp32.images},
                {"fp32_top1", fp32.top1},
                {"fp32_top5", fp32.top5},
                {"quant_top1", quantized.top1},
                {"quant_top5", quantized.top5},
                {"packs", packs},
                {"units", units_json(*net, report.scores)},
                {"reconstruction", reconstruction},
                {"average_bits", avg_bits},
                {"timing", timing}};
    if (report.mixed_precision) {
      out["boundary_bits"] = report.plan.boundary_bits;
      out["mixed_precision_budget"] = report.plan.budget;
    }
    write_json_atomic(opt.report_json, out);
  }
  char summary[160];
  std::snprintf(summary, sizeof summary,
                "%s %s W%dA%d: FP32 top-1 %.2f top-5 %.2f | quantized top-1 %.2f top-5 %.2f",
                opt.model_name.c_str(), method_name(opt.method), opt.quant.weight_bits,
                opt.quant.activation_bits, fp32.top1, fp32.top5, quantized.top1, quantized.top5);
  log_line(summary);
  std::printf("%s\n", summary);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int run_quantize(int argc, char** argv) {
  return run_guarded([&] { return quantize_main(argc, argv); });
}

}  // namespace pk::cli
