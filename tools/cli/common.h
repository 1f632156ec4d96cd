// Pieces the packptq commands share: loading a model from --model_name,
// --model_config and --weights, FP32 evaluation on an ImageFolder split,
// report files, and turning exceptions into one-line errors and exit codes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nets/net.h"
#include "tools/data/dataset.h"

namespace pk::cli {

// Builds `model_name` (configured by the config.json at `model_config_path`
// when not empty), loads `weights_path` (torch.save, zip or legacy, or
// safetensors; names adapted by Net::adapt_checkpoint) strictly and switches
// the net to eval mode. Throws UsageError for an
// unknown model name or an empty weights path, std::runtime_error naming the
// file for an unreadable or malformed config, a config whose model_name
// disagrees, or a checkpoint that does not fit the model.
std::shared_ptr<Net> load_model(const std::string& model_name, const std::string& model_config_path,
                                const std::string& weights_path);

struct EvalResult {
  double top1 = 0;  // percent
  double top5 = 0;  // percent; 100 when the model has fewer than 5 classes
  int64_t images = 0;
  double seconds = 0;
  double images_per_second() const { return seconds > 0 ? images / seconds : 0.0; }
};

// Top-1/top-5 accuracy of `net` on `samples`, decoded `batch_size` at a time,
// without autograd, with a progress line named `label`. A sample's label
// counts as top-k when fewer than k logits rank above it; ties rank the lower
// class index first and NaN above every number, as torch.topk orders them.
EvalResult evaluate(Net& net, const std::vector<data::Sample>& samples,
                    const data::PreprocessConfig& config, int64_t batch_size,
                    const std::string& label);

// Writes `value` (indented) to `path` through a temporary file in the same
// folder and a rename, so readers never see a partial report.
void write_json_atomic(const std::string& path, const nlohmann::json& value);

// Throws UsageError unless the folder that will hold `path` exists, so that a
// long run does not fail only when it writes its results.
void check_output_folder(const std::string& path, const std::string& flag);

// Labels are class-folder indices: the folder must have one class per output.
void check_class_count(const data::ImageFolder& folder, const Net& net);

// Runs a command body and maps failures to exit codes: UsageError prints
// "packptq: error: ..." and returns 2, any other exception prints it and
// returns 1. Messages are folded onto one line.
int run_guarded(const std::function<int()>& body);

}  // namespace pk::cli
