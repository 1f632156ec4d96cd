#include "quant/analysis.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/log.h"
#include "engine/ops.h"
#include "engine/output_files.h"
#include "engine/parallel.h"
#include "nets/fold_bn.h"
#include "quant/model_io.h"
#include "tools/data/evaluate.h"

namespace pk {

namespace {

using nlohmann::json;

// Images per forward pass: the float pass keeps every layer's output of
// these images until the quantized pass has compared them.
constexpr int64_t kImagesPerPass = 8;

bool quantizes_weights(QuantMode mode) {
  return mode == QuantMode::Weights || mode == QuantMode::Quantized;
}
bool quantizes_activations(QuantMode mode) {
  return mode == QuantMode::Activations || mode == QuantMode::Quantized;
}

// Stands in for a layer's QuantHook during the analysis: passes the operands
// and the weight through it and shows `seen` what the layer received (before
// quantization) and what it computed.
class LayerProbe : public LayerHook {
 public:
  using Seen = std::function<void(const std::vector<Tensor>& operands, const Tensor& output)>;

  explicit LayerProbe(std::shared_ptr<QuantHook> hook)
      : hook_(std::move(hook)), operands_(hook_->operand_quantizers.size()) {}
  void set_seen(Seen seen) { seen_ = std::move(seen); }

  Tensor operand(int index, const Tensor& x) override {
    operands_[static_cast<size_t>(index)] = x;
    return hook_->operand(index, x);
  }
  Tensor weight(const Tensor& w) override { return hook_->weight(w); }
  void output(const Tensor& y) override {
    if (seen_) seen_(operands_, y);
  }

 private:
  std::shared_ptr<QuantHook> hook_;
  std::vector<Tensor> operands_;
  Seen seen_;
};

// The model under analysis: each layer switched between its float and its
// quantized configuration, with a probe in place of its hook. Everything is
// put back as it was found when it goes out of scope.
class AnalysisSession {
 public:
  AnalysisSession(QuantModel& model, const std::map<std::string, Tensor>& float_weights)
      : model_(model) {
    for (QuantLayer& l : model.layers()) {
      Entry e;
      e.found_mode = l.hook->mode();
      check(e.found_mode != QuantMode::Initializing,
            "analyze_errors: layer " + l.name + " is still initializing its quantizers");
      const QuantHook& hook = *l.hook;
      if (quantizes_weights(e.found_mode) && hook.weight_quantizer)
        check(hook.weight_quantizer->initialized(),
              "analyze_errors: the weight quantizer of layer " + l.name + " is not initialized");
      if (quantizes_activations(e.found_mode))
        for (const auto& q : hook.operand_quantizers)
          check(!q || q->initialized(), "analyze_errors: an activation quantizer of layer " +
                                            l.name + " is not initialized");
      e.weight = l.hook->layer_weight;
      if (e.weight.defined()) {
        const auto it = float_weights.find(l.name);
        check(it != float_weights.end(), "analyze_errors: no float weight for layer " + l.name);
        check(it->second.shape() == e.weight.shape(), [&] {
          return "analyze_errors: the float weight of layer " + l.name + " is " +
                 it->second.describe() + ", the layer's " + e.weight.describe();
        });
        e.found_weight = e.weight.clone();
        e.float_weight = it->second.to(e.weight.device()).clone();
        // The hook as found turns the layer's weight tensor into the weight
        // the quantized model computes with.
        e.quantized_weight = l.hook->weight(e.weight).clone();
      }
      entries_.push_back(std::move(e));
    }
    for (QuantLayer& l : model.layers()) {
      probes_.push_back(std::make_shared<LayerProbe>(l.hook));
      l.layer->set_hook(probes_.back());
    }
  }

  ~AnalysisSession() {
    for (size_t i = 0; i < entries_.size(); ++i) {
      QuantLayer& l = model_.layers()[i];
      l.layer->set_hook(l.hook);
      Entry& e = entries_[i];
      if (e.weight.defined()) e.weight.copy_(e.found_weight);
      l.hook->set_quant(quantizes_weights(e.found_mode), quantizes_activations(e.found_mode));
    }
  }
  AnalysisSession(const AnalysisSession&) = delete;
  AnalysisSession& operator=(const AnalysisSession&) = delete;

  size_t size() const { return entries_.size(); }
  LayerProbe& probe(size_t i) { return *probes_[i]; }

  void set_float(size_t i) {
    Entry& e = entries_[i];
    if (e.weight.defined()) e.weight.copy_(e.float_weight);
    model_.layers()[i].hook->set_quant(false, false);
  }
  // The weight is quantized already, so the weight quantizer stays off.
  void set_quantized(size_t i) {
    Entry& e = entries_[i];
    if (e.weight.defined()) e.weight.copy_(e.quantized_weight);
    model_.layers()[i].hook->set_quant(false, quantizes_activations(e.found_mode));
  }
  void set_all_float() {
    for (size_t i = 0; i < size(); ++i) set_float(i);
  }
  void set_all_quantized() {
    for (size_t i = 0; i < size(); ++i) set_quantized(i);
  }

  // Layer i alone on `operands`, through its own hook (not the probe).
  Tensor run_layer(size_t i, const std::vector<Tensor>& operands) {
    QuantLayer& l = model_.layers()[i];
    l.layer->set_hook(l.hook);
    Tensor y;
    try {
      y = run_layer_op(*l.layer, operands);
    } catch (...) {
      l.layer->set_hook(probes_[i]);
      throw;
    }
    l.layer->set_hook(probes_[i]);
    return y;
  }

 private:
  struct Entry {
    QuantMode found_mode = QuantMode::Float;
    Tensor weight;  // the layer's own tensor (undefined for MatMul)
    Tensor found_weight, float_weight, quantized_weight;
  };

  static Tensor run_layer_op(const HookedLayer& layer, const std::vector<Tensor>& operands) {
    switch (layer.kind()) {
      case LayerKind::Conv:
        return static_cast<const Conv2d&>(layer).forward(operands[0]);
      case LayerKind::Linear:
        return static_cast<const Linear&>(layer).forward(operands[0]);
      case LayerKind::MatMul:
        return static_cast<const MatMul&>(layer).forward(operands[0], operands[1]);
    }
    throw std::logic_error("unknown layer kind");
  }

  QuantModel& model_;
  std::vector<Entry> entries_;
  std::vector<std::shared_ptr<LayerProbe>> probes_;
};

// Sums over every element of every image, in double.
struct ErrorSums {
  double reference = 0, error = 0, dot = 0, quantized = 0;

  void add(const Tensor& reference_output, const Tensor& quantized_output) {
    check(reference_output.shape() == quantized_output.shape(), [&] {
      return "analyze_errors: a layer's output is " + reference_output.describe() +
             " in the float model but " + quantized_output.describe() + " quantized";
    });
    const std::vector<float> r = reference_output.to_vector();
    const std::vector<float> q = quantized_output.to_vector();
    for (size_t k = 0; k < r.size(); ++k) {
      const double a = r[k], b = q[k];
      reference += a * a;
      error += (b - a) * (b - a);
      dot += a * b;
      quantized += b * b;
    }
  }

  void fill(LayerError& out) const {
    if (error == 0) {
      out.sqnr_db = std::numeric_limits<double>::infinity();
      out.cosine = 1;
      return;
    }
    out.sqnr_db = 10 * std::log10(reference / error);
    const double norms = std::sqrt(reference * quantized);
    out.cosine = norms > 0 ? std::clamp(dot / norms, -1.0, 1.0) : 0.0;
  }
};

json sqnr_to_json(double db) {
  if (std::isinf(db)) return db > 0 ? "inf" : "-inf";
  if (std::isnan(db)) return "nan";
  return db;
}

json errors_to_json(const std::vector<LayerError>& errors) {
  json out = json::array();
  for (const LayerError& e : errors)
    out.push_back({{"layer", e.layer},
                   {"unit", e.unit},
                   {"sqnr_db", sqnr_to_json(e.sqnr_db)},
                   {"cosine", e.cosine}});
  return out;
}

std::string pack_label(const Net& net, int64_t first, int64_t last) {
  std::string name = net.units()[first].name;
  if (last - first > 1) name += ".." + net.units()[last - 1].name;
  return name;
}

}  // namespace

ErrorAnalysis analyze_errors(QuantModel& model, const std::map<std::string, Tensor>& float_weights,
                             const Tensor& images) {
  check(images.dim() == 4 && images.size(0) > 0,
        "analyze_errors: expected images [N, 3, H, W], got " + images.describe());
  NoGradGuard no_grad;
  const size_t count = model.layers().size();
  std::vector<ErrorSums> graph(count), alone(count);
  {
    AnalysisSession session(model, float_weights);
    const std::vector<Tensor> params = model.net().parameters();
    const Device device = params.empty() ? Device::CPU : params.front().device();
    std::vector<std::vector<Tensor>> float_outputs(count);
    std::vector<size_t> compared(count);
    for (int64_t begin = 0; begin < images.size(0); begin += kImagesPerPass) {
      const Tensor batch =
          slice_rows(images, begin, std::min(kImagesPerPass, images.size(0) - begin)).to(device);

      // The float model; each layer also runs alone quantized on its float
      // operands.
      session.set_all_float();
      for (size_t i = 0; i < count; ++i) {
        float_outputs[i].clear();
        session.probe(i).set_seen([&, i](const std::vector<Tensor>& operands, const Tensor& y) {
          float_outputs[i].push_back(y);
          session.set_quantized(i);
          const Tensor alone_output = session.run_layer(i, operands);
          session.set_float(i);
          alone[i].add(y, alone_output);
        });
      }
      model.net().forward(batch);

      // The quantized model, each layer's output against the float one.
      session.set_all_quantized();
      for (size_t i = 0; i < count; ++i) {
        compared[i] = 0;
        session.probe(i).set_seen([&, i](const std::vector<Tensor>&, const Tensor& y) {
          check(compared[i] < float_outputs[i].size(), [&] {
            return "analyze_errors: layer " + model.layers()[i].name +
                   " ran more often quantized than in float";
          });
          graph[i].add(float_outputs[i][compared[i]++], y);
        });
      }
      model.net().forward(batch);
      for (size_t i = 0; i < count; ++i)
        check(compared[i] == float_outputs[i].size(), [&] {
          return "analyze_errors: layer " + model.layers()[i].name +
                 " ran less often quantized than in float";
        });
    }
  }

  ErrorAnalysis analysis;
  analysis.images = images.size(0);
  const std::vector<Unit>& units = model.net().units();
  for (size_t i = 0; i < count; ++i) {
    const QuantLayer& l = model.layers()[i];
    LayerError e{l.name, units[static_cast<size_t>(l.unit)].name, 0, 0};
    graph[i].fill(e);
    analysis.graph_wise.push_back(e);
    alone[i].fill(e);
    analysis.layer_wise.push_back(e);
  }
  return analysis;
}

std::vector<PackAblation> ablate_packs(QuantModel& model,
                                       const std::map<std::string, Tensor>& float_weights,
                                       const std::vector<std::pair<int64_t, int64_t>>& packs,
                                       const std::vector<data::Sample>& samples,
                                       const data::PreprocessConfig& preprocess,
                                       int64_t batch_size) {
  Net& net = model.net();
  for (const auto& [first, last] : packs)
    check(0 <= first && first < last && last <= net.num_units(), [&, first = first, last = last] {
      return "ablate_packs: units [" + std::to_string(first) + ", " + std::to_string(last) +
             ") are not a range of the " + std::to_string(net.num_units()) + " units";
    });
  NoGradGuard no_grad;
  std::vector<PackAblation> out;
  AnalysisSession session(model, float_weights);
  for (const auto& [first, last] : packs) {
    session.set_all_quantized();
    for (int64_t t = first; t < last; ++t)
      for (size_t i : model.unit_layers(t)) session.set_float(i);
    const std::string label = pack_label(net, first, last);
    const data::EvalResult result =
        data::evaluate(net, samples, preprocess, batch_size, "pack " + label + " in float");
    out.push_back({label, result.top1});
  }
  return out;
}

std::map<std::string, Tensor> layer_weights(QuantModel& model) {
  std::map<std::string, Tensor> out;
  for (const QuantLayer& l : model.layers())
    if (l.hook->layer_weight.defined()) out[l.name] = l.hook->layer_weight;
  return out;
}

json analysis_to_json(const ErrorAnalysis& analysis) {
  json packs = json::array();
  for (const PackAblation& p : analysis.packs)
    packs.push_back({{"pack", p.pack}, {"top1", p.top1}});
  return {{"images", analysis.images},
          {"graph_wise", errors_to_json(analysis.graph_wise)},
          {"layer_wise", errors_to_json(analysis.layer_wise)},
          {"packs", packs}};
}

// ---- packptq analyze ------------------------------------------------------

namespace {

std::vector<AnalyzeSetting> make_analyze_settings() {
  using C = AnalyzeConfig;
  return {
      setting_field("quantized", &C::quantized,
                    "quantized model file from packptq quantize (trained_models/ or "
                    "inited_models/) (required)"),
      setting_field("weights", &C::weights,
                    "the FP32 checkpoint the model was quantized from, for the float weights "
                    "(required unless --quantized is an initialized model, which holds them)"),
      setting_field("dataset_path", &C::dataset_path,
                    "ImageFolder root holding <split>/<class>/*.jpg (required)"),
      setting_field("split", &C::split, "subfolder of --dataset_path to analyse",
                    check_not_empty),
      setting_field("images", &C::images,
                    "images to analyse: the first N of --split in ImageFolder order",
                    check_positive),
      setting_field("packs", &C::packs,
                    "also top-1 on all of --split with one of the file's packs at a time left "
                    "in float"),
      setting_field("batch_size", &C::batch_size,
                    "images per forward pass of --packs (the quantization run's, unless given)",
                    check_positive),
      setting_field("threads", &C::threads, "CPU threads, 0 = all cores ($PACKPTQ_THREADS)",
                    check_thread_count),
      setting_field("report_json", &C::report_json, "also write the analysis to this JSON file"),
  };
}

// The FP32 checkpoint's weights of the file's quantized layers, BatchNorm
// folded as the file's net is.
std::map<std::string, Tensor> checkpoint_weights(const AnalyzeConfig& config,
                                                 const LoadedQuantModel& loaded) {
  const std::string& model_name = loaded.net->model_name();
  std::shared_ptr<Net> net = create_net(model_name, loaded.metadata.at("model_config"));
  const LoadReport report =
      net->load_state_dict(net->adapt_checkpoint(load_checkpoint(config.weights)),
                           /*strict=*/false, config.weights);
  if (!report.ok())
    throw std::runtime_error("checkpoint '" + config.weights + "' does not fit the " + model_name +
                             " of " + config.quantized + ": " + report.summary());
  net->eval();
  if (loaded.metadata.value("fold_bn", false)) fold_batch_norms(*net);
  std::map<std::string, Tensor> out;
  for (const auto& [name, layer] : net->quantizable_layers())
    for (const auto& [param, tensor] : layer->named_parameters())
      if (param == "weight") out[name] = tensor;
  return out;
}

// The file's packs as unit ranges.
std::vector<std::pair<int64_t, int64_t>> stored_packs(const LoadedQuantModel& loaded,
                                                      const std::string& path) {
  const Net& net = *loaded.net;
  std::map<std::string, int64_t> unit_index;
  for (int64_t t = 0; t < net.num_units(); ++t) unit_index[net.units()[t].name] = t;
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const json& pack : loaded.metadata.at("packs")) {
    const std::vector<std::string> units = pack.at("units").get<std::vector<std::string>>();
    if (units.empty() || !unit_index.count(units.front()) || !unit_index.count(units.back()))
      throw std::runtime_error(
          path + ": a stored pack names units the model does not have: " + pack.dump());
    out.push_back({unit_index[units.front()], unit_index[units.back()] + 1});
  }
  return out;
}

}  // namespace

const std::vector<AnalyzeSetting>& analyze_settings() {
  static const std::vector<AnalyzeSetting> settings = make_analyze_settings();
  return settings;
}

void validate(const AnalyzeConfig& config) {
  for (const auto& [value, name] :
       {std::pair<std::string, std::string>{config.quantized, "quantized"},
        {config.dataset_path, "dataset_path"}})
    if (value.empty()) throw ConfigError("--" + name + " is required (see --help)");
  for (const AnalyzeSetting& setting : analyze_settings())
    if (setting.check) setting.check(config);
  if (!config.report_json.empty()) check_output_folder(config.report_json, "report_json");
}

ErrorAnalysis analyze_model(const AnalyzeConfig& config) {
  validate(config);
  set_num_threads(static_cast<int>(config.threads));
  LoadedQuantModel loaded = load_quantized_model(config.quantized);
  QuantModel& model = *loaded.model;
  const json& metadata = loaded.metadata;
  if (config.weights.empty() && !loaded.has_float_weights)
    throw ConfigError("--weights is required: " + config.quantized +
                      " is a trained model, which holds no float weights; pass the FP32 "
                      "checkpoint it was quantized from");
  if (config.packs && metadata.value("packs", json::array()).empty())
    throw ConfigError("--packs: " + config.quantized +
                      " stores no packs (an initialized model, or a method that forms none such "
                      "as rtn)");
  const std::vector<std::pair<int64_t, int64_t>> packs =
      config.packs ? stored_packs(loaded, config.quantized)
                   : std::vector<std::pair<int64_t, int64_t>>{};
  const std::map<std::string, Tensor> float_weights =
      config.weights.empty() ? layer_weights(model) : checkpoint_weights(config, loaded);

  const data::ImageFolder folder = data::scan_image_folder(config.dataset_path, config.split);
  data::check_class_count(folder, *loaded.net);
  const data::PreprocessConfig preprocess = data::preprocess_config(
      loaded.net->preprocess(), metadata.value("reference_preprocessing", false));
  const size_t images = std::min(folder.samples.size(), static_cast<size_t>(config.images));
  log_line("analyze " + loaded.net->model_name() + " (" + config.quantized + ") on the first " +
           std::to_string(images) + " images of " + folder.directory + ", " +
           std::to_string(num_threads()) + " threads");
  ErrorAnalysis analysis = analyze_errors(
      model, float_weights, data::load_batch(folder.samples, 0, images, preprocess).images);
  if (config.packs) {
    const int64_t batch_size = config.given.count("batch_size")
                                   ? config.batch_size
                                   : metadata.value("eval_batch_size", config.batch_size);
    analysis.packs =
        ablate_packs(model, float_weights, packs, folder.samples, preprocess, batch_size);
  }
  if (!config.report_json.empty()) {
    json report = analysis_to_json(analysis);
    report["model_name"] = loaded.net->model_name();
    report["weight_bits"] = model.settings().weight_bits;
    report["activation_bits"] = model.settings().activation_bits;
    report["quantized"] = config.quantized;
    report["split"] = config.split;
    write_json_atomic(config.report_json, report);
  }
  return analysis;
}

}  // namespace pk
