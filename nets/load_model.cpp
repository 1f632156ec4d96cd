#include "nets/load_model.h"

#include <algorithm>
#include <cerrno>
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

std::string describe_mismatch(const LoadReport& report, const std::string& weights_path,
                              const std::string& model_name, const std::string& config_path) {
  std::string what = "checkpoint '" + weights_path + "' does not fit " + model_name +
                     (config_path.empty() ? " (standard configuration)"
                                          : " as configured by '" + config_path + "'");
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
                                const std::string& weights_path) {
  const std::vector<std::string>& known = model_names();
  if (std::find(known.begin(), known.end(), model_name) == known.end())
    throw ConfigError("unknown --model_name '" + model_name + "'; known: " + join(known, ", "));
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

  const TensorMap tensors = net->adapt_checkpoint(load_checkpoint(weights_path));
  const LoadReport report = net->load_state_dict(tensors, /*strict=*/false, weights_path);
  if (!report.ok())
    throw std::runtime_error(
        describe_mismatch(report, weights_path, model_name, model_config_path));
  net->eval();
  return net;
}

}  // namespace pk
