#include "tools/cli/common.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/log.h"
#include "tools/cli/flags.h"

namespace pk::cli {

namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

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

Device module_device(const Module& module) {
  std::vector<Tensor> params = module.parameters();
  return params.empty() ? Device::CPU : params.front().device();
}

// torch.topk's order: larger first, NaN above every number, ties by index.
bool ranks_above(float a, int64_t a_index, float b, int64_t b_index) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan || b_nan) return a_nan && b_nan ? a_index < b_index : a_nan;
  return a > b || (a == b && a_index < b_index);
}

int64_t rank_of_label(const float* logits, int64_t classes, int64_t label) {
  int64_t rank = 0;
  for (int64_t c = 0; c < classes; ++c) rank += ranks_above(logits[c], c, logits[label], label);
  return rank;
}

std::string percent(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", value);
  return buf;
}

// "a\n  b\n  c\nd" -> "a b c; d": indented continuation lines join with a
// space, other lines with "; ".
std::string fold_lines(const std::string& message) {
  std::string out;
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] != '\n') {
      out += message[i];
      continue;
    }
    bool indented = false;
    while (i + 1 < message.size() && (message[i + 1] == ' ' || message[i + 1] == '\n')) {
      indented = indented || message[i + 1] == ' ';
      ++i;
    }
    if (i + 1 < message.size()) out += indented ? " " : "; ";
  }
  return out;
}

// To stderr, and into the run's log when one is open, so that the log of a
// failed run says why it stopped.
void print_error(const std::string& message) {
  const std::string folded = fold_lines(message);
  std::fprintf(stderr, "packptq: error: %s\n", folded.c_str());
  std::fflush(stderr);
  log_file_line("error: " + folded);
}

// Closes the run's log however a command ends, after its error is logged.
struct LogFileCloser {
  ~LogFileCloser() { close_log_file(); }
};

}  // namespace

std::shared_ptr<Net> load_model(const std::string& model_name, const std::string& model_config_path,
                                const std::string& weights_path) {
  const std::vector<std::string>& known = model_names();
  if (std::find(known.begin(), known.end(), model_name) == known.end())
    throw UsageError("unknown --model_name '" + model_name + "'; known: " + join(known, ", "));
  if (weights_path.empty())
    throw UsageError("--weights is required: a randomly initialized " + model_name +
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

EvalResult evaluate(Net& net, const std::vector<data::Sample>& samples,
                    const data::PreprocessConfig& config, int64_t batch_size,
                    const std::string& label) {
  check(batch_size > 0, "evaluate: batch size must be positive, got " + std::to_string(batch_size));
  check(!samples.empty(), "evaluate: no images to evaluate");
  NoGradGuard no_grad;
  const Device device = module_device(net);
  const size_t total = samples.size();
  int64_t top1 = 0, top5 = 0;
  Progress progress(label, static_cast<int64_t>(total), "img");
  for (size_t begin = 0; begin < total; begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(total, begin + static_cast<size_t>(batch_size));
    const data::Batch batch = data::load_batch(samples, begin, end, config);
    const Tensor logits = net.forward(batch.images.to(device));
    const int64_t count = static_cast<int64_t>(end - begin);
    check(logits.dim() == 2 && logits.size(0) == count,
          "evaluate: expected logits [" + std::to_string(count) + ", classes], got " +
              logits.describe());
    const int64_t classes = logits.size(1);
    const std::vector<float> host = logits.to_vector();
    const std::vector<int64_t> labels = batch.labels.to_int64_vector();
    for (int64_t i = 0; i < count; ++i) {
      check(labels[i] >= 0 && labels[i] < classes,
            "evaluate: label " + std::to_string(labels[i]) + " of " + samples[begin + i].path +
                " is outside the model's " + std::to_string(classes) + " classes");
      const int64_t rank = rank_of_label(host.data() + i * classes, classes, labels[i]);
      top1 += rank < 1;
      top5 += rank < 5;
    }
    // The last batch is reported by finish() below.
    if (end < total)
      progress.update(static_cast<int64_t>(end), "top-1 " + percent(100.0 * top1 / end));
  }
  EvalResult result;
  result.images = static_cast<int64_t>(total);
  result.top1 = 100.0 * top1 / total;
  result.top5 = 100.0 * top5 / total;
  result.seconds = progress.elapsed_seconds();
  progress.finish("top-1 " + percent(result.top1) + " top-5 " + percent(result.top5));
  return result;
}

void write_json_atomic(const std::string& path, const nlohmann::json& value) {
  const fs::path target(path);
  fs::path temporary = target;
  temporary += ".tmp" + std::to_string(getpid());
  std::error_code ignored;
  {
    std::ofstream out(temporary, std::ios::trunc);
    if (out) out << value.dump(2) << "\n";
    out.close();
    if (!out) {
      fs::remove(temporary, ignored);
      throw std::runtime_error("cannot write '" + path + "': " + std::strerror(errno));
    }
  }
  std::error_code error;
  fs::rename(temporary, target, error);
  if (error) {
    fs::remove(temporary, ignored);
    throw std::runtime_error("cannot write '" + path + "': " + error.message());
  }
}

void check_output_folder(const std::string& path, const std::string& flag) {
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::is_directory(folder))
    throw UsageError("--" + flag + " " + path + ": folder '" + folder.string() +
                     "' does not exist");
  if (fs::is_directory(target)) throw UsageError("--" + flag + " " + path + " is a folder");
}

void check_class_count(const data::ImageFolder& folder, const Net& net) {
  if (static_cast<int64_t>(folder.classes.size()) != net.num_classes())
    throw std::runtime_error(folder.directory + " has " + std::to_string(folder.classes.size()) +
                             " class folders but the model has " +
                             std::to_string(net.num_classes()) + " classes");
}

int run_guarded(const std::function<int()>& body) {
  LogFileCloser closer;
  try {
    return body();
  } catch (const UsageError& e) {
    print_error(e.what());
    return 2;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  } catch (...) {
    print_error("unknown failure");
    return 1;
  }
}

}  // namespace pk::cli
