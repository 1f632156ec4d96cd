// packptq eval: FP32 top-1/top-5 of a checkpoint on one split of an
// ImageFolder dataset, or, with --quantized FILE, of a quantized model file
// written by `packptq quantize`, through evaluate_model() (quant/evaluate_run.h).
#include <cstdio>
#include <iostream>

#include "engine/parallel.h"
#include "quant/evaluate_run.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"

namespace pk::cli {

namespace {

int eval_main(int argc, char** argv) {
  EvaluateConfig config;
  config.threads = threads_from_env();
  FlagSet flags("packptq eval");
  declare_settings(flags, evaluate_settings(), config);
  if (!flags.parse(argc, argv, 1)) {
    std::cout << "Evaluates a checkpoint in FP32, or a quantized model file (--quantized): "
                 "top-1 and top-5 accuracy on <dataset_path>/<split>.\n"
              << flags.help();
    return 0;
  }
  apply_settings(flags, evaluate_settings(), config);
  const data::EvalResult result = evaluate_model(config).accuracy;
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
