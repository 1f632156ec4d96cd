#include "nets/load_model.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "engine/checkpoint.h"
#include "engine/errors.h"

namespace pk {

namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

// A few names of a list, then how many more, so that a checkpoint of the
// wrong model gives one readable line rather than hundreds of keys.
std::string first_few(const std::vector<std::string>& names) {
  constexpr size_t kShown = 3;
  std::vector<std::string> shown(names.begin(), names.begin() + std::min(kShown, names.size()));
  std::string out = join(shown, ", ");
  if (names.size() > kShown) out += ", ... " + std::to_string(names.size() - kShown) + " more";
  return out;
}

std::string describe_model(const std::string& model_name, const std::string& config_path) {
  return model_name + (config_path.empty() ? " (standard configuration)"
                                           : " as configured by '" + config_path + "'");
}

std::string list_state_dicts(const std::vector<StateDictEntry>& state_dicts) {
  std::vector<std::string> described;
  for (const StateDictEntry& entry : state_dicts) described.push_back(entry.describe());
  return join(described, ", ");
}

// `closest` names the state dict the report is about when the file holds
// several.
std::string describe_mismatch(const LoadReport& report, const std::string& weights_path,
                              const std::string& model_name, const std::string& config_path,
                              const std::vector<StateDictEntry>& state_dicts,
                              const StateDictEntry& closest) {
  std::string what =
      "checkpoint '" + weights_path + "' does not fit " + describe_model(model_name, config_path);
  if (state_dicts.size() > 1)
    what += "; it holds " + std::to_string(state_dicts.size()) +
            " state dicts: " + list_state_dicts(state_dicts) + "; the closest is " +
            closest.describe();
  auto part = [&](const std::vector<std::string>& names, const std::string& title) {
    if (!names.empty())
      what += "; " + std::to_string(names.size()) + " " + title + ": " + first_few(names);
  };
  part(report.mismatched, "shape/dtype mismatches (file vs model)");
  part(report.missing, "keys missing from the file");
  part(report.unexpected, "unexpected keys in the file");
  if (config_path.empty())
    what += " (pass the model's config.json with --model_config if it is not the standard " +
            model_name + ")";
  return what;
}

// What a state dict lacks and has too many of for `net`, by name only,
// after the renaming the net does to every checkpoint.
LoadReport compare_names(const Net& net, const TensorMap& own, const StateDictEntry& entry) {
  TensorMap names;
  for (const std::string& name : entry.names) names.emplace(name, Tensor());
  const TensorMap adapted = net.adapt_checkpoint(std::move(names));
  LoadReport report;
  for (const auto& [name, tensor] : own)
    if (!adapted.count(name)) report.missing.push_back(name);
  for (const auto& [name, tensor] : adapted)
    if (!own.count(name)) report.unexpected.push_back(name);
  return report;
}

// The state dict to load: the first whose names fit the net, a non-EMA one
// before an EMA copy unless `ema` asks for the copy; when none fits, the one
// with the fewest missing and unexpected names, for the message.
size_t choose_state_dict(const Net& net, const Checkpoint& checkpoint, bool ema,
                         const std::string& model_name, const std::string& config_path) {
  const std::vector<StateDictEntry>& entries = checkpoint.state_dicts();
  if (ema && std::none_of(entries.begin(), entries.end(),
                          [](const StateDictEntry& e) { return e.ema; }))
    throw std::runtime_error("--ema: checkpoint '" + checkpoint.path() +
                             "' holds no EMA copy of the weights; its state dicts: " +
                             list_state_dicts(entries));
  if (entries.size() == 1) return 0;
  const TensorMap own = net.state_dict();
  size_t closest = 0, closest_misfits = SIZE_MAX;
  std::vector<size_t> fitting;
  for (size_t i = 0; i < entries.size(); ++i) {
    const LoadReport report = compare_names(net, own, entries[i]);
    if (report.ok()) fitting.push_back(i);
    const size_t misfits = report.missing.size() + report.unexpected.size();
    if (misfits < closest_misfits) closest = i, closest_misfits = misfits;
  }
  for (size_t i : fitting)
    if (entries[i].ema == ema) return i;
  if (!fitting.empty() && !ema) return fitting.front();  // only an EMA copy fits
  if (!fitting.empty())
    throw std::runtime_error("--ema: no EMA copy of the weights in checkpoint '" +
                             checkpoint.path() + "' fits " +
                             describe_model(model_name, config_path) +
                             "; its state dicts: " + list_state_dicts(entries));
  return closest;
}

}  // namespace

nlohmann::json read_model_config(const std::string& path, const std::string& model_name) {
  const std::string where = "model config '" + path + "'";
  if (!fs::is_regular_file(path))
    throw std::runtime_error(where + ": " + (fs::exists(path) ? "not a file" : "no such file"));
  std::ifstream in(path);
  if (!in) throw std::runtime_error(where + ": cannot open: " + std::strerror(errno));
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(where + ": not valid JSON: " + e.what());
  }
  if (!config.is_object()) throw std::runtime_error(where + ": expected a JSON object");
  if (config.contains("model_name")) {
    const nlohmann::json& name = config["model_name"];
    if (!name.is_string()) throw std::runtime_error(where + ": model_name is not a string");
    if (name.get<std::string>() != model_name)
      throw std::runtime_error(where + " describes model_name '" + name.get<std::string>() +
                               "', not --model_name '" + model_name + "'");
  }
  return config;
}

std::shared_ptr<Net> load_model(const std::string& model_name, const std::string& model_config_path,
                                const std::string& weights_path, bool ema) {
  const std::vector<std::string>& known = model_names();
  if (std::find(known.begin(), known.end(), model_name) == known.end())
    throw ConfigError("unknown --model_name '" + model_name + "'; known: " + model_names_text());
  if (weights_path.empty())
    throw ConfigError("--weights is required: a randomly initialized " + model_name +
                      " has no meaningful accuracy");

  nlohmann::json overrides = nlohmann::json::object();
  if (!model_config_path.empty()) overrides = read_model_config(model_config_path, model_name);
  std::shared_ptr<Net> net;
  try {
    net = create_net(model_name, overrides);
  } catch (const std::exception& e) {
    if (model_config_path.empty()) throw;
    throw std::runtime_error("model config '" + model_config_path + "': " + e.what());
  }

  const std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(weights_path);
  const size_t chosen = choose_state_dict(*net, *checkpoint, ema, model_name, model_config_path);
  const TensorMap tensors = net->adapt_checkpoint(checkpoint->load(chosen));
  const LoadReport report = net->load_state_dict(tensors, /*strict=*/false, weights_path);
  if (!report.ok())
    throw std::runtime_error(describe_mismatch(report, weights_path, model_name,
                                               model_config_path, checkpoint->state_dicts(),
                                               checkpoint->state_dicts()[chosen]));
  net->eval();
  return net;
}

}  // namespace pk
