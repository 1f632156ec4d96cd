// packptq eval: FP32 top-1/top-5 of a checkpoint on one split of an
// ImageFolder dataset, with the model's own preprocessing; or, with
// --quantized FILE, the top-1/top-5 of a quantized model file written by
// `packptq quantize` (integer weights, scales and zero points; the model's
// name and configuration come from the file).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/log.h"
#include "engine/parallel.h"
#include "quant/model_io.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"

namespace pk::cli {

namespace {

void declare_flags(FlagSet& flags) {
  std::string names;
  for (const auto& name : model_names()) names += (names.empty() ? "" : ", ") + name;
  flags.add_string("model_name", "", "architecture (required unless --quantized): " + names);
  flags.add_string("weights", "",
                   "checkpoint (required unless --quantized): torch.save file (.pth, .pth.tar) or .safetensors");
  flags.add_string("model_config", "",
                   "config.json with the settings that differ from --model_name's standard ones");
  flags.add_string("dataset_path", "", "ImageFolder root holding <split>/<class>/*.jpg (required)");
  flags.add_string("split", "val", "subfolder of --dataset_path to evaluate");
  flags.add_string("quantized", "",
                   "quantized model file from packptq quantize (trained_models/ or inited_models/)");
  flags.add_int("batch_size", 64,
                "images per forward pass (--quantized: the quantization run's, unless given)");
  flags.add_int("threads", threads_from_env(), "CPU threads, 0 = all cores ($PACKPTQ_THREADS)");
  flags.add_string("report_json", "", "also write the results to this JSON file");
  flags.add_switch("reference_preprocessing",
                   "the reference's evaluation preprocessing (ImageNet mean/std, resize to "
                   "input/0.875, center crop, bilinear); --quantized: as its quantization run");
}

void require(const FlagSet& flags, const std::string& name) {
  if (flags.str(name).empty()) throw UsageError("--" + name + " is required (see --help)");
}

int eval_main(int argc, char** argv) {
  FlagSet flags("packptq eval");
  declare_flags(flags);
  if (!flags.parse(argc, argv, 1)) {
    std::cout << "Evaluates a checkpoint in FP32, or a quantized model file (--quantized): "
                 "top-1 and top-5 accuracy on <dataset_path>/<split>.\n"
              << flags.help();
    return 0;
  }
  const std::string quantized = flags.str("quantized");
  if (quantized.empty()) {
    for (const char* name : {"model_name", "weights"}) require(flags, name);
  } else {
    for (const char* name : {"model_name", "weights", "model_config"})
      if (flags.given(name))
        throw UsageError(std::string("--") + name + " cannot be combined with --quantized, whose "
                         "file holds the model");
  }
  require(flags, "dataset_path");
  std::string model_name = flags.str("model_name");
  const std::string weights = flags.str("weights");
  const std::string dataset = flags.str("dataset_path");
  const std::string split = flags.str("split");
  const std::string report_path = flags.str("report_json");
  int64_t batch_size = flags.integer("batch_size");
  const int64_t threads = flags.integer("threads");
  if (batch_size <= 0)
    throw UsageError("--batch_size must be positive, got " + std::to_string(batch_size));
  if (threads < 0)
    throw UsageError("--threads must be 0 (all cores) or more, got " + std::to_string(threads));
  if (split.empty()) throw UsageError("--split must not be empty");
  if (!report_path.empty()) check_output_folder(report_path, "report_json");
  set_num_threads(static_cast<int>(threads));

  bool reference_preprocessing = flags.on("reference_preprocessing");
  std::shared_ptr<Net> net;
  if (quantized.empty()) {
    net = load_model(model_name, flags.str("model_config"), weights);
  } else {
    // The layers own their quantizer hooks, so the net alone is the quantized model.
    const LoadedQuantModel loaded = load_quantized_model(quantized);
    net = loaded.net;
    model_name = net->model_name();
    // Batches as in the quantization run, so that its top-1 is reproduced exactly.
    if (!flags.given("batch_size") && loaded.metadata.contains("eval_batch_size"))
      batch_size = loaded.metadata["eval_batch_size"].get<int64_t>();
    // And the same images: the run's preprocessing.
    reference_preprocessing =
        reference_preprocessing || loaded.metadata.value("reference_preprocessing", false);
  }
  const data::ImageFolder folder = data::scan_image_folder(dataset, split);
  check_class_count(folder, *net);
  const data::PreprocessConfig preprocess =
      data::preprocess_config(net->preprocess(), reference_preprocessing);
  log_line("eval " + model_name + " (" + (quantized.empty() ? weights : quantized) + ") on " +
           folder.directory + ": " + std::to_string(folder.samples.size()) + " images, " + std::to_string(num_threads()) +
           " threads, input " + std::to_string(preprocess.input_size) + " px");
  const EvalResult result =
      evaluate(*net, folder.samples, preprocess, batch_size, "eval " + model_name);

  if (!report_path.empty()) {
    write_json_atomic(report_path, {{"model_name", model_name},
                                    {"weights", weights},
                                    {"quantized", quantized},
                                    {"model_config", flags.str("model_config")},
                                    {"dataset", dataset},
                                    {"split", split},
                                    {"images", result.images},
                                    {"top1", result.top1},
                                    {"top5", result.top5},
                                    {"images_per_second", result.images_per_second()},
                                    {"seconds", result.seconds},
                                    {"batch_size", batch_size},
                                    {"threads", num_threads()}});
  }
  std::printf("top-1 %.2f  top-5 %.2f  (%lld images, %.1f img/s)\n", result.top1, result.top5,
              static_cast<long long>(result.images), result.images_per_second());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int run_eval(int argc, char** argv) {
  return run_guarded([&] { return eval_main(argc, argv); });
}

}  // namespace pk::cli
