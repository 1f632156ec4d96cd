#include "quant/run.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <set>
#include <tuple>

#include "engine/errors.h"
#include "engine/interrupt.h"
#include "engine/log.h"
#include "engine/output_files.h"
#include "engine/parallel.h"
#include "engine/stopwatch.h"
#include "nets/fold_bn.h"
#include "nets/load_model.h"
#include "quant/model_io.h"
#include "quant/report_html.h"
#include "quant/run_checkpoint.h"

namespace pk {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string start_timestamp() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d_%H%M%S", std::localtime(&now));
  return buf;
}

// With pretrained_model_path the quantization settings come from the file;
// settings given explicitly must agree with it.
void check_resume_settings(const QuantizeConfig& config, const LoadedQuantModel& loaded) {
  const std::string& path = config.pretrained_model_path;
  if (!loaded.has_float_weights)
    throw ConfigError("--pretrained_model_path " + path +
                      " holds no float weights (a trained model?); resuming needs an initialized "
                      "model from inited_models/");
  const QuantSettings& s = loaded.model->settings();
  auto disagree = [&](const std::string& setting, const std::string& in_file) {
    throw ConfigError("--" + setting + " disagrees with --pretrained_model_path " + path +
                      ", which has " + in_file);
  };
  auto given = [&](const std::string& setting) { return config.given.count(setting) > 0; };
  if (!config.model_name.empty() && config.model_name != loaded.net->model_name())
    disagree("model_name", loaded.net->model_name());
  if (given("weight_bits") && config.weight_bits != s.weight_bits)
    disagree("weight_bits", std::to_string(s.weight_bits));
  if (given("activation_bits") && config.activation_bits != s.activation_bits)
    disagree("activation_bits", std::to_string(s.activation_bits));
  if (config.weight_channel_wise && !s.weight_channel_wise)
    disagree("weight_channel_wise", "per-tensor weights");
  if (config.activation_channel_wise && !s.activation_channel_wise)
    disagree("activation_channel_wise", "per-tensor activations");
  if (given("weight_init_method") && config.weight_init_method != s.weight_init)
    disagree("weight_init_method", init_method_name(s.weight_init));
  if (given("activation_init_method") && config.activation_init_method != s.activation_init)
    disagree("activation_init_method", init_method_name(s.activation_init));
  const auto& layers = loaded.model->layers();
  if (config.first_last_8bit &&
      (layers.front().hook->weight_bits != 8 || layers.back().hook->weight_bits != 8))
    disagree("first_last_8bit", "first and last layers below 8 bits");
  if (config.fold_bn && !loaded.metadata.value("fold_bn", false))
    disagree("fold_bn", "BatchNorm not folded");
}

// The model to quantize, and what the run's configuration becomes with it.
struct RunModel {
  std::shared_ptr<Net> net;
  std::unique_ptr<QuantModel> model;
  json model_config = json::object();  // stored in the model files
  bool resumed = false;
  int64_t folded_batch_norms = 0;
};

RunModel open_model(QuantizeConfig& config) {
  RunModel run;
  run.resumed = !config.pretrained_model_path.empty();
  if (run.resumed) {
    LoadedQuantModel loaded = load_quantized_model(config.pretrained_model_path);
    check_resume_settings(config, loaded);
    run.net = loaded.net;
    run.model = std::move(loaded.model);
    run.model_config = loaded.metadata.at("model_config");
    const QuantSettings& s = run.model->settings();
    config.model_name = run.net->model_name();
    config.weight_bits = s.weight_bits;
    config.activation_bits = s.activation_bits;
    config.weight_channel_wise = s.weight_channel_wise;
    config.activation_channel_wise = s.activation_channel_wise;
    config.weight_init_method = s.weight_init;
    config.activation_init_method = s.activation_init;
    config.fold_bn = loaded.metadata.value("fold_bn", false);  // the file's net is folded or not
  } else {
    run.net = load_model(config.model_name, config.model_config, config.weights, config.ema);
    if (!config.model_config.empty())
      run.model_config = read_model_config(config.model_config, config.model_name);
    if (config.fold_bn) run.folded_batch_norms = fold_batch_norms(*run.net);
    run.model =
        std::make_unique<QuantModel>(run.net, config.quant_settings(), config.first_last_8bit);
  }
  run.model->to(config.device);
  return run;
}

// Both splits need one class per output, the same classes in the same
// order, and train/ enough images to calibrate on.
void check_dataset(const data::ImageFolder& train, const data::ImageFolder& val, const Net& net,
                   int64_t calibration_samples) {
  data::check_class_count(train, net);
  data::check_class_count(val, net);
  for (size_t c = 0; c < train.classes.size(); ++c)
    if (train.classes[c] != val.classes[c])
      throw std::runtime_error("class folder " + std::to_string(c) + " is '" + train.classes[c] +
                               "' in " + train.directory + " but '" + val.classes[c] + "' in " +
                               val.directory + ": both splits need the same class folders");
  if (calibration_samples > static_cast<int64_t>(train.samples.size()))
    throw ConfigError("--calibration_samples " + std::to_string(calibration_samples) +
                      " exceeds the " + std::to_string(train.samples.size()) + " images of " +
                      train.directory);
}

std::vector<PackResult> describe_packs(QuantModel& model, const std::vector<Pack>& packs) {
  std::vector<PackResult> out;
  for (const Pack& p : packs) {
    PackResult r;
    r.score = p.score;
    bool bits_known = false;
    for (int64_t u = p.first; u < p.last; ++u) {
      r.units.push_back(model.net().units()[u].name);
      if (!bits_known && !model.unit_layers(u).empty()) {
        std::tie(r.weight_bits, r.activation_bits) = model.unit_bits(u);
        bits_known = true;
      }
    }
    out.push_back(r);
  }
  return out;
}

std::vector<UnitScoreResult> describe_scores(const Net& net, const std::vector<UnitScore>& scores) {
  std::vector<UnitScoreResult> out;
  for (const UnitScore& s : scores)
    out.push_back({net.units()[s.unit].name, unit_kind_name(net.units()[s.unit].kind), s.kl,
                   s.hessian, s.omega, s.first_order, s.second_order});
  return out;
}

LayerResult::ScaleSummary summarize(const UniformQuantizer* quantizer) {
  LayerResult::ScaleSummary summary;
  if (!quantizer || !quantizer->initialized()) return summary;
  const std::vector<float> scale = quantizer->scale.to_vector();
  summary.count = static_cast<int64_t>(scale.size());
  summary.min = summary.max = scale.front();
  double sum = 0;
  for (float v : scale) {
    summary.min = std::min<double>(summary.min, v);
    summary.max = std::max<double>(summary.max, v);
    sum += v;
  }
  summary.mean = sum / static_cast<double>(scale.size());
  return summary;
}

std::vector<LayerResult> describe_layers(QuantModel& model) {
  std::vector<LayerResult> out;
  for (const QuantLayer& layer : model.layers()) {
    LayerResult r;
    r.name = layer.name;
    r.unit = model.net().units()[layer.unit].name;
    const LayerKind kind = layer.layer->kind();
    r.kind = kind == LayerKind::Conv ? "conv" : kind == LayerKind::Linear ? "linear" : "matmul";
    r.weight_bits = layer.hook->weight_bits;
    r.activation_bits = layer.hook->activation_bits;
    r.weight_scale = summarize(layer.hook->weight_quantizer.get());
    for (const auto& q : layer.hook->operand_quantizers)
      r.operand_scales.push_back(summarize(q.get()));
    out.push_back(r);
  }
  return out;
}

json scale_to_json(const LayerResult::ScaleSummary& s) {
  if (s.count == 0) return nullptr;
  return {{"count", s.count}, {"min", s.min}, {"mean", s.mean}, {"max", s.max}};
}

json packs_to_json(const std::vector<PackResult>& packs) {
  json out = json::array();
  for (const PackResult& p : packs)
    out.push_back({{"units", p.units},
                   {"score", p.score},
                   {"bits", {{"weight", p.weight_bits}, {"activation", p.activation_bits}}}});
  return out;
}

// Keeps the run's log open for the run and closes it however the run ends,
// after logging the error of a failed run, so that the log says why it stopped.
class RunLog {
 public:
  RunLog(const std::string& path, bool append) { open_log_file(path, append); }
  ~RunLog() { close_log_file(); }
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;
};

// The checkpoint a resumed run continues from.
struct ResumePoint {
  std::string path;
  RunCheckpoint checkpoint;
};

// Settings that only say where a run's files go, or what its report adds:
// a resumed run may change them.
bool changes_result(const std::string& setting) {
  static const std::set<std::string> kFree = {"resume",      "output_dir",      "report_json",
                                              "report_html", "analysis_images", "num_workers"};
  return !kFree.count(setting);
}

// The interrupted run's configuration, with the settings given now that do
// not change the result; a given setting that would change it must equal
// the interrupted run's.
QuantizeConfig resumed_config(const QuantizeConfig& given, const ResumePoint& resume) {
  QuantizeConfig config;
  for (const ConfigSetting& s : quantize_settings()) {
    if (!resume.checkpoint.config.contains(s.name))
      throw std::runtime_error("run checkpoint '" + resume.path + "' has no setting " + s.name);
    s.set(config, resume.checkpoint.config.at(s.name));
  }
  for (const ConfigSetting& s : quantize_settings()) {
    if (!given.given.count(s.name)) continue;
    if (!changes_result(s.name)) {
      s.set(config, s.get(given));
    } else if (s.get(given) != s.get(config)) {
      throw ConfigError("--" + s.name + " " + s.get(given).dump() +
                        " differs from the interrupted run's " + s.get(config).dump() + " (" +
                        resume.path + "): leave it out to resume, or start a new run");
    }
  }
  // The files go beside the checkpoint's folder unless told otherwise.
  if (!given.given.count("output_dir"))
    config.output_dir = fs::path(resume.path).parent_path().parent_path().string();
  config.resume = given.resume;
  config.given = given.given;
  return config;
}

QuantizeResult run(QuantizeConfig config, const RunObserver& observe,
                   const ResumePoint* resume) {
  const Stopwatch total;
  QuantizeResult result;
  auto notify = [&](RunEvent::Kind kind, RunPhase phase, double seconds, QuantModel* model) {
    if (kind == RunEvent::Kind::PhaseStarted) check_interrupt();  // ctrl-C: stop between phases
    if (!observe) return;
    RunEvent event{kind, phase};
    event.seconds = seconds;
    event.model = model;
    observe(event);
  };
  auto saved = [&](const std::string& path) {
    if (!observe) return;
    RunEvent event{RunEvent::Kind::FileSaved, RunPhase::Save};
    event.path = path;
    observe(event);
  };

  // Everything that can be checked is checked before a file is written: bad
  // input leaves no files.
  notify(RunEvent::Kind::PhaseStarted, RunPhase::Data, 0, nullptr);
  Stopwatch phase;
  RunModel run = open_model(config);
  QuantModel& model = *run.model;
  const data::ImageFolder train = data::scan_image_folder(config.dataset_path, "train");
  const data::ImageFolder val = data::scan_image_folder(config.dataset_path, "val");
  check_dataset(train, val, *run.net, config.calibration_samples);

  const uint64_t weights_fingerprint = net_fingerprint(*run.net);
  if (resume) {
    if (weights_fingerprint != resume->checkpoint.weights_fingerprint)
      throw ConfigError("--weights " + config.weights + " (with --model_config '" +
                        config.model_config + "') holds other weights than the interrupted run's (" +
                        resume->path + ")");
    const std::string path_now = kernel_path(config.device);
    if (!resume->checkpoint.kernel_path.empty() && resume->checkpoint.kernel_path != path_now)
      throw ConfigError("the interrupted run (" + resume->path + ") ran on the kernel path '" +
                        resume->checkpoint.kernel_path + "', this process runs '" + path_now +
                        "': resume where that path runs (PACKPTQ_CPU_ISA chooses the CPU's), "
                        "or start a new run");
    restore_run_checkpoint(resume->path, model, config.device);
  }
  result.started_at = resume ? resume->checkpoint.started_at : start_timestamp();
  const std::string run_name = result.started_at + "_" + config.model_name + "_w" +
                               std::to_string(config.weight_bits) + "_a" +
                               std::to_string(config.activation_bits);
  const fs::path output_dir(config.output_dir);
  fs::create_directories(output_dir);
  result.log_path =
      (output_dir / (run_name + (config.enable_mixed_precision ? "_mixed_precision" : "") + ".log"))
          .string();
  RunLog log(result.log_path, /*append=*/resume != nullptr);
  fs::create_directories(output_dir / "checkpoints");
  const std::string checkpoint_path =
      (output_dir / "checkpoints" / (run_name + ".safetensors")).string();
  int64_t targets_done =
      resume ? static_cast<int64_t>(resume->checkpoint.pipeline.reconstruction.size()) : 0;
  try {
    config.threads = num_threads();
    result.config = config;
    log_line("packptq quantize " + config.model_name +
             ", configuration: " + config_to_json(config).dump());
    log_line("kernels: " + kernel_path(config.device) + "; " + std::to_string(config.threads) +
             " threads");
    if (config.fold_bn && !run.resumed)
      log_line("folded " + std::to_string(run.folded_batch_norms) +
               " BatchNorm2d layers into the convs before them");

    const data::PreprocessConfig preprocess =
        data::preprocess_config(run.net->preprocess(), config.reference_preprocessing);
    const uint64_t seed = static_cast<uint64_t>(config.seed);
    const std::vector<data::Sample> calibration_samples =
        data::sample_calibration(train.samples, config.calibration_samples, seed);
    const Tensor calibration =
        data::load_batch(
            calibration_samples, 0, calibration_samples.size(), preprocess,
            config.reference_preprocessing ? std::optional<uint64_t>(seed) : std::nullopt)
            .images.to(config.device);
    log_line("calibration: " + std::to_string(calibration_samples.size()) + " images of " +
             train.directory + " (seed " + std::to_string(seed) + "), input " +
             std::to_string(preprocess.input_size) + " px" +
             (config.reference_preprocessing ? " (reference preprocessing, augmented)" : "") +
             "; evaluation: " + std::to_string(val.samples.size()) + " images of " + val.directory +
             "; " + std::to_string(num_threads()) + " threads");
    result.seconds["data"] = phase.seconds();
    notify(RunEvent::Kind::PhaseFinished, RunPhase::Data, result.seconds["data"], nullptr);

    notify(RunEvent::Kind::PhaseStarted, RunPhase::Fp32Eval, 0, nullptr);
    model.set_quant(false, false);  // FP32 (a resumed model comes quantized)
    result.fp32 = data::evaluate(*run.net, val.samples, preprocess, config.batch_size, "fp32 eval");
    result.val_images = result.fp32.images;
    result.seconds["fp32_eval"] = result.fp32.seconds;
    notify(RunEvent::Kind::PhaseFinished, RunPhase::Fp32Eval, result.fp32.seconds, &model);

    const json metadata = {{"model_config", run.model_config},
                           {"kernel_path", kernel_path(config.device)},
                           {"threads", config.threads},
                           {"fold_bn", config.fold_bn},
                           {"reference_preprocessing", config.reference_preprocessing},
                           {"method", method_name(config.method)},
                           {"seed", seed},
                           {"mixed_precision", config.enable_mixed_precision},
                           {"eval_batch_size", config.batch_size},
                           {"fp32_top1", result.fp32.top1},
                           {"fp32_top5", result.fp32.top5}};
    Generator gen(seed);
    if (resume) {
      gen.set_state(resume->checkpoint.generator_state);
      result.inited_model_path = resume->checkpoint.inited_model_path;
      log_line("resuming from " + resume->path);
    }
    // After each reconstruction target: the checkpoint to resume from.
    auto save_checkpoint = [&](const RunEvent& event) {
      RunCheckpoint checkpoint{config_to_json(config), result.started_at, result.inited_model_path,
                               gen.state(), weights_fingerprint, kernel_path(config.device),
                               *event.pipeline};
      save_run_checkpoint(checkpoint_path, checkpoint, *event.model);
      targets_done = event.target_index + 1;
      log_line("checkpoint after " + std::to_string(targets_done) + "/" +
               std::to_string(event.target_count) + " targets: " + checkpoint_path);
    };
    auto observe_pipeline = [&](const RunEvent& event) {
      if (event.kind == RunEvent::Kind::TargetFinished) {
        save_checkpoint(event);
        if (observe) observe(event);
        saved(checkpoint_path);
        check_interrupt();
        return;
      }
      // The initialized model is saved as soon as it exists (unless it is the
      // file the run resumed from).
      if (event.kind == RunEvent::Kind::PhaseFinished && event.phase == RunPhase::Init &&
          !run.resumed) {
        const fs::path folder = output_dir / "inited_models";
        fs::create_directories(folder);
        result.inited_model_path = (folder / (run_name + ".safetensors")).string();
        json inited = metadata;
        inited["stage"] = "initialized";
        save_quantized_model(result.inited_model_path, *event.model, inited,
                             /*with_float_weights=*/true);
        log_line("saved the initialized model to " + result.inited_model_path);
        if (observe) observe(event);
        saved(result.inited_model_path);
        return;
      }
      if (observe) observe(event);
    };
    const PipelineReport report =
        run_pipeline(model, calibration, config.pipeline_options(), gen, run.resumed || resume,
                     observe_pipeline, resume ? &resume->checkpoint.pipeline : nullptr);
    for (const auto& [name, seconds] : report.phase_seconds) result.seconds[name] = seconds;
    if (!result.seconds.count("scoring")) result.seconds["scoring"] = 0.0;
    result.reconstruction = report.reconstruction;
    result.units = describe_scores(*run.net, report.scores);
    result.mixed_precision = report.mixed_precision;
    result.plan = report.plan;

    notify(RunEvent::Kind::PhaseStarted, RunPhase::QuantEval, 0, &model);
    result.quantized =
        data::evaluate(*run.net, val.samples, preprocess, config.batch_size, "quantized eval");
    result.seconds["quant_eval"] = result.quantized.seconds;
    notify(RunEvent::Kind::PhaseFinished, RunPhase::QuantEval, result.quantized.seconds, &model);

    if (config.analysis_images > 0) {
      notify(RunEvent::Kind::PhaseStarted, RunPhase::Analysis, 0, &model);
      phase.restart();
      const size_t count =
          std::min(val.samples.size(), static_cast<size_t>(config.analysis_images));
      const Tensor images =
          data::load_batch(val.samples, 0, count, preprocess).images.to(config.device);
      result.analysis = analyze_errors(model, layer_weights(model), images);
      result.seconds["analysis"] = phase.seconds();
      notify(RunEvent::Kind::PhaseFinished, RunPhase::Analysis, result.seconds["analysis"],
             &model);
    }
    result.packs = describe_packs(model, report.packs);
    result.layers = describe_layers(model);
    result.average_bits = model.average_bits();
    notify(RunEvent::Kind::PhaseStarted, RunPhase::Save, 0, &model);
    phase.restart();
    const fs::path trained_folder = output_dir / "trained_models";
    fs::create_directories(trained_folder);
    result.trained_model_path = (trained_folder / (run_name + ".safetensors")).string();
    json trained = metadata;
    trained["stage"] = "trained";
    trained["keep_soft_rounding"] = config.keep_soft_rounding;
    trained["quant_top1"] = result.quantized.top1;
    trained["quant_top5"] = result.quantized.top5;
    trained["packs"] = packs_to_json(result.packs);
    trained["average_bits"] = result.average_bits;
    save_quantized_model(result.trained_model_path, model, trained, /*with_float_weights=*/false);
    log_line("saved the quantized model to " + result.trained_model_path);
    saved(result.trained_model_path);
    result.seconds["save"] = phase.seconds();
    result.seconds["total"] = total.seconds();
    result.html_path = config.report_html.empty()
                           ? fs::path(result.log_path).replace_extension(".html").string()
                           : config.report_html;
    const json report_json = report_to_json(result);
    if (!config.report_json.empty()) {
      write_json_atomic(config.report_json, report_json);
      saved(config.report_json);
    }
    write_report_html(result.html_path, report_json);
    log_line("wrote the report " + result.html_path);
    saved(result.html_path);
    notify(RunEvent::Kind::PhaseFinished, RunPhase::Save, result.seconds["save"], &model);
    // The run is complete: nothing is left to resume.
    std::error_code ignored;
    fs::remove(checkpoint_path, ignored);
    log_line(summary_line(result));
  } catch (const Interrupted&) {
    const std::string message =
        targets_done == 0
            ? "interrupted before the first reconstruction target finished: nothing to resume"
            : "interrupted; the checkpoint " + checkpoint_path + " holds the " +
                  std::to_string(targets_done) + " finished reconstruction targets: continue " +
                  "with packptq quantize --resume " + output_dir.string();
    log_file_line("error: " + message);
    throw Interrupted(message);
  } catch (const std::exception& e) {
    log_file_line("error: " + one_line(e.what()));
    throw;
  }
  return result;
}

}  // namespace

QuantizeResult quantize(const QuantizeConfig& given, const RunObserver& observe) {
  if (given.resume.empty()) {
    validate(given);
    set_num_threads(static_cast<int>(given.threads));
    return run(given, observe, nullptr);
  }
  if (!given.pretrained_model_path.empty())
    throw ConfigError("--resume cannot be combined with --pretrained_model_path");
  ResumePoint resume;
  resume.path = find_run_checkpoint(given.resume);
  resume.checkpoint = read_run_checkpoint(resume.path);
  const QuantizeConfig config = resumed_config(given, resume);
  validate(config);
  set_num_threads(static_cast<int>(config.threads));
  return run(config, observe, &resume);
}

json report_to_json(const QuantizeResult& result) {
  const QuantizeConfig& config = result.config;
  json reconstruction = json::array();
  json unit_seconds = json::object();
  for (const ReconResult& r : result.reconstruction) {
    // Curve points as [iteration, reconstruction loss, rounding loss, beta].
    json curve = json::array();
    for (const ReconSample& p : r.curve)
      curve.push_back({p.iteration, p.reconstruction, p.rounding, p.beta});
    reconstruction.push_back({{"name", r.name}, {"final_loss", r.final_loss}, {"curve", curve}});
    unit_seconds[r.name] = r.seconds;
  }
  json units = json::array();
  for (const UnitScoreResult& u : result.units)
    units.push_back({{"name", u.name},
                     {"kind", u.kind},
                     {"kl", u.kl},
                     {"hessian", u.hessian},
                     {"omega", u.omega},
                     {"first_order", u.first_order},
                     {"second_order", u.second_order}});
  json layers = json::array();
  for (const LayerResult& l : result.layers) {
    json operands = json::array();
    for (const auto& s : l.operand_scales) operands.push_back(scale_to_json(s));
    layers.push_back({{"name", l.name},
                      {"unit", l.unit},
                      {"kind", l.kind},
                      {"weight_bits", l.weight_bits},
                      {"activation_bits", l.activation_bits},
                      {"weight_scale", scale_to_json(l.weight_scale)},
                      {"operand_scales", operands}});
  }
  json timing = {{"started_at", result.started_at}, {"reconstruction_units", unit_seconds}};
  for (const auto& [name, seconds] : result.seconds) timing[name] = seconds;
  json out = {{"model_name", config.model_name},
              {"method", method_name(config.method)},
              {"weight_bits", config.weight_bits},
              {"activation_bits", config.activation_bits},
              {"mixed_precision", config.enable_mixed_precision},
              {"seed", static_cast<uint64_t>(config.seed)},
              {"config", config_to_json(config)},
              {"val_images", result.val_images},
              {"fp32_top1", result.fp32.top1},
              {"fp32_top5", result.fp32.top5},
              {"quant_top1", result.quantized.top1},
              {"quant_top5", result.quantized.top5},
              {"packs", packs_to_json(result.packs)},
              {"units", units},
              {"reconstruction", reconstruction},
              {"layers", layers},
              {"average_bits", result.average_bits},
              {"packptq_version", packptq_version()},
              {"kernel_path", kernel_path(result.config.device)},
              {"timing", timing}};
  if (result.analysis) out["analysis"] = analysis_to_json(*result.analysis);
  if (result.mixed_precision) {
    out["boundary_bits"] = result.plan.boundary_bits;
    out["mixed_precision_budget"] = result.plan.budget;  // bits of the packs, costs summed
    // The same budget per element of the whole model, comparable with
    // average_bits: halfway between the middle and the high bit width.
    out["mixed_precision_budget_bits"] = (result.plan.mid + result.plan.high) / 2.0;
  }
  return out;
}

std::string summary_line(const QuantizeResult& result) {
  const QuantizeConfig& c = result.config;
  char line[256];
  std::snprintf(line, sizeof line,
                "%s %s W%lldA%lld: FP32 top-1 %.2f top-5 %.2f | quantized top-1 %.2f top-5 %.2f",
                c.model_name.c_str(), method_name(c.method), static_cast<long long>(c.weight_bits),
                static_cast<long long>(c.activation_bits), result.fp32.top1, result.fp32.top5,
                result.quantized.top1, result.quantized.top5);
  return line;
}

const char* packptq_version() { return PACKPTQ_VERSION; }

}  // namespace pk
