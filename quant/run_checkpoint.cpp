#include "quant/run_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "engine/errors.h"
#include "engine/safetensors.h"
#include "quant/model_io.h"

namespace pk {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("run checkpoint '" + path + "': " + what);
}

json scores_to_json(const std::vector<UnitScore>& scores) {
  json out = json::array();
  for (const UnitScore& s : scores)
    out.push_back({{"unit", s.unit}, {"kl", s.kl}, {"hessian", s.hessian}, {"omega", s.omega},
                   {"first_order", s.first_order}, {"second_order", s.second_order}});
  return out;
}

std::vector<UnitScore> scores_from_json(const json& j) {
  std::vector<UnitScore> out;
  for (const json& s : j)
    out.push_back({s.at("unit"), s.at("kl"), s.at("hessian"), s.at("omega"),
                   s.at("first_order"), s.at("second_order")});
  return out;
}

json reconstruction_to_json(const std::vector<ReconResult>& results) {
  json out = json::array();
  for (const ReconResult& r : results) {
    json curve = json::array();
    for (const ReconSample& c : r.curve)
      curve.push_back({c.iteration, c.reconstruction, c.rounding, c.beta});
    out.push_back(
        {{"name", r.name}, {"final_loss", r.final_loss}, {"seconds", r.seconds}, {"curve", curve}});
  }
  return out;
}

std::vector<ReconResult> reconstruction_from_json(const json& j) {
  std::vector<ReconResult> out;
  for (const json& r : j) {
    ReconResult result{r.at("name"), r.at("final_loss"), r.at("seconds"), {}};
    for (const json& c : r.at("curve")) result.curve.push_back({c[0], c[1], c[2], c[3]});
    out.push_back(result);
  }
  return out;
}

json pipeline_to_json(const PipelineReport& p) {
  json packs = json::array();
  for (const Pack& pack : p.packs)
    packs.push_back({pack.first, pack.last, pack.score, pack.bits});
  json targets = json::array();
  for (const ReconTarget& t : p.targets) targets.push_back(t.name);
  return {{"scores", scores_to_json(p.scores)},
          {"packs", packs},
          {"mixed_precision", p.mixed_precision},
          {"plan",
           {p.plan.low, p.plan.mid, p.plan.high, p.plan.boundary_bits, p.plan.budget, p.plan.used,
            p.plan.average_bits}},
          {"targets", targets},
          {"reconstruction", reconstruction_to_json(p.reconstruction)},
          {"phase_seconds", p.phase_seconds}};
}

PipelineReport pipeline_from_json(const json& j) {
  PipelineReport p;
  p.scores = scores_from_json(j.at("scores"));
  for (const json& pack : j.at("packs")) p.packs.push_back({pack[0], pack[1], pack[2], pack[3]});
  p.mixed_precision = j.at("mixed_precision");
  const json& plan = j.at("plan");
  p.plan = {plan[0], plan[1], plan[2], plan[3], plan[4], plan[5], plan[6]};
  for (const json& name : j.at("targets")) p.targets.push_back({name.get<std::string>()});
  p.reconstruction = reconstruction_from_json(j.at("reconstruction"));
  p.phase_seconds = j.at("phase_seconds").get<std::map<std::string, double>>();
  return p;
}

void fnv(uint64_t& h, const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
}

}  // namespace

uint64_t tensors_fingerprint(const TensorMap& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& [name, tensor] : tensors) {
    fnv(h, name.data(), name.size());
    fnv(h, tensor.shape().data(), tensor.shape().size() * sizeof(int64_t));
    const Tensor cpu = tensor.to(Device::CPU);
    fnv(h, cpu.raw_data(), static_cast<size_t>(cpu.numel()) * dtype_size(cpu.dtype()));
  }
  return h;
}

uint64_t net_fingerprint(const Net& net) { return tensors_fingerprint(net.state_dict()); }

void save_run_checkpoint(const std::string& path, const RunCheckpoint& checkpoint,
                         QuantModel& model) {
  TensorMap tensors;
  json layers = json::object();
  for (const QuantLayer& layer : model.layers()) {
    const QuantHook& hook = *layer.hook;
    json entry = {{"weight_bits", hook.weight_bits}, {"activation_bits", hook.activation_bits}};
    if (const WeightQuantizer* wq = hook.weight_quantizer.get()) {
      tensors[layer.name + ".weight_scale"] = wq->scale.detach();
      tensors[layer.name + ".weight_zero_point"] = wq->zero_point.detach();
      entry["rounding"] = rounding_name(wq->rounding);
      if (wq->rounding != Rounding::Nearest) tensors[layer.name + ".alpha"] = wq->alpha.detach();
    }
    for (size_t i = 0; i < hook.operand_quantizers.size(); ++i)
      if (const UniformQuantizer* q = hook.operand_quantizers[i].get()) {
        tensors[operand_prefix(layer, i) + "_scale"] = q->scale.detach();
        tensors[operand_prefix(layer, i) + "_zero_point"] = q->zero_point.detach();
      }
    layers[layer.name] = entry;
  }
  const json metadata = {{"format", kRunCheckpointFormat},
                         {"config", checkpoint.config},
                         {"started_at", checkpoint.started_at},
                         {"inited_model_path", checkpoint.inited_model_path},
                         {"generator_state", checkpoint.generator_state},
                         {"weights_fingerprint", checkpoint.weights_fingerprint},
                         {"kernel_path", checkpoint.kernel_path},
                         {"layers", layers},
                         {"pipeline", pipeline_to_json(checkpoint.pipeline)}};
  // The folder is not created again: a run whose output folder disappeared
  // stops with an error naming it.
  save_safetensors(path, tensors, {{"packptq_checkpoint", metadata.dump()}});
}

RunCheckpoint read_run_checkpoint(const std::string& path) {
  const auto metadata = load_safetensors_metadata(path);
  auto it = metadata.find("packptq_checkpoint");
  if (it == metadata.end()) fail(path, "not a packptq run checkpoint (no packptq_checkpoint entry)");
  try {
    const json j = json::parse(it->second);
    if (j.at("format") != kRunCheckpointFormat)
      fail(path, "format " + j.at("format").dump() + ", expected " + kRunCheckpointFormat);
    RunCheckpoint c;
    c.config = j.at("config");
    c.started_at = j.at("started_at");
    c.inited_model_path = j.at("inited_model_path");
    c.generator_state = j.at("generator_state");
    c.weights_fingerprint = j.at("weights_fingerprint");
    c.kernel_path = j.value("kernel_path", "");
    c.pipeline = pipeline_from_json(j.at("pipeline"));
    return c;
  } catch (const json::exception& e) {
    fail(path, std::string("bad metadata: ") + e.what());
  }
}

void restore_run_checkpoint(const std::string& path, QuantModel& model, Device device) {
  TensorMap tensors = load_safetensors(path);
  const json layers = json::parse(load_safetensors_metadata(path).at("packptq_checkpoint"))
                          .at("layers");
  auto take = [&](const std::string& name, const Tensor& like) {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail(path, "no tensor " + name);
    if (like.defined() && it->second.shape() != like.shape())
      fail(path, name + " is " + it->second.describe() + ", the model's is " + like.describe());
    return it->second.to(device);
  };
  for (QuantLayer& layer : model.layers()) {
    if (!layers.contains(layer.name)) fail(path, "no entry for layer " + layer.name);
    const json& entry = layers.at(layer.name);
    QuantHook& hook = *layer.hook;
    if (hook.weight_bits != entry.at("weight_bits") ||
        hook.activation_bits != entry.at("activation_bits"))
      hook.set_bits(entry.at("weight_bits"), entry.at("activation_bits"));
    if (WeightQuantizer* wq = hook.weight_quantizer.get()) {
      wq->scale = take(layer.name + ".weight_scale", wq->scale);
      wq->zero_point = take(layer.name + ".weight_zero_point", wq->zero_point);
      const std::string rounding = entry.at("rounding");
      wq->rounding = rounding == "hard"   ? Rounding::Hard
                     : rounding == "soft" ? Rounding::Soft
                                          : Rounding::Nearest;
      if (wq->rounding != Rounding::Nearest)
        wq->alpha = take(layer.name + ".alpha", hook.layer_weight);
    }
    for (size_t i = 0; i < hook.operand_quantizers.size(); ++i)
      if (UniformQuantizer* q = hook.operand_quantizers[i].get()) {
        q->scale = take(operand_prefix(layer, i) + "_scale", q->scale);
        q->zero_point = take(operand_prefix(layer, i) + "_zero_point", q->zero_point);
      }
  }
  model.set_quant(true, true);
}

std::string find_run_checkpoint(const std::string& path) {
  if (fs::is_regular_file(path)) return path;
  const fs::path folder = fs::path(path) / "checkpoints";
  std::string newest;
  if (fs::is_directory(folder))
    for (const auto& entry : fs::directory_iterator(folder)) {
      const std::string name = entry.path().filename().string();
      // Temporary files of an interrupted save end in ".tmp<pid>".
      if (entry.is_regular_file() && entry.path().extension() == ".safetensors" &&
          (newest.empty() || name > fs::path(newest).filename().string()))
        newest = entry.path().string();
    }
  if (newest.empty())
    throw ConfigError("--resume " + path + ": no run checkpoint (neither a checkpoint file nor a "
                      "folder with checkpoints/*.safetensors)");
  return newest;
}

}  // namespace pk
