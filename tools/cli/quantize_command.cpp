// packptq [quantize]: the Pack-PTQ run (docs/METHOD.md sections 4-8) on an
// ImageFolder dataset, through quantize() (quant/run.h). Its flags are the
// fields of QuantizeConfig, declared once in quantize_settings() with the
// reference CLI's names and defaults; this file parses them, runs, and
// prints the run's progress and summary.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "engine/errors.h"
#include "engine/interrupt.h"
#include "engine/log.h"
#include "engine/output_files.h"
#include "engine/parallel.h"
#include "engine/stopwatch.h"
#include "quant/run.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"
#if PACKPTQ_WITH_ONNX
#include "quant/onnx/export_run.h"
#endif

namespace pk::cli {

namespace {

// The first ctrl-C asks the run to stop at its next safe point (it keeps
// its last checkpoint and says how to resume); a second one ends the
// process at once.
void on_sigint(int) {
  request_interrupt();
  std::signal(SIGINT, SIG_DFL);
}

// One log line per reconstructed target with the ETA of the whole
// reconstruction phase (each target's own progress line has its own).
RunObserver reconstruction_progress() {
  auto phase = std::make_shared<Stopwatch>();
  return [phase](const RunEvent& event) {
    if (event.kind == RunEvent::Kind::PhaseStarted && event.phase == RunPhase::Reconstruction)
      phase->restart();
    if (event.kind != RunEvent::Kind::TargetFinished) return;
    const double done = static_cast<double>(event.target_index + 1);
    const double left = static_cast<double>(event.target_count) - done;
    log_line("reconstructed " + std::to_string(event.target_index + 1) + "/" +
             std::to_string(event.target_count) + " targets (" + event.target->name +
             "), reconstruction ETA " + format_duration(phase->seconds() / done * left));
  };
}

int quantize_main(int argc, char** argv) {
  QuantizeConfig config;
  config.threads = threads_from_env();
  FlagSet flags("packptq [quantize]");
  declare_settings(flags, quantize_settings(), config);
  flags.add_string("export_onnx", "",
                   "also write the quantized model as ONNX to this file (packptq export)");
  if (!flags.parse(argc, argv, 1)) {
    std::cout << "Quantizes a model with Pack-PTQ (or a baseline --method) and evaluates it on "
                 "<dataset_path>/val.\n"
              << flags.help();
    return 0;
  }
  apply_settings(flags, quantize_settings(), config);
  const std::string onnx = flags.str("export_onnx");
  if (flags.given("export_onnx")) {
#if PACKPTQ_WITH_ONNX
    if (onnx.empty()) throw ConfigError("--export_onnx needs a file name");
    check_output_folder(onnx, "export_onnx");
#else
    throw ConfigError(kNoOnnxExport);
#endif
  }
  std::signal(SIGINT, on_sigint);
  const QuantizeResult result = quantize(config, reconstruction_progress());
  std::signal(SIGINT, SIG_DFL);
  std::printf("%s\n", summary_line(result).c_str());
  std::fflush(stdout);
#if PACKPTQ_WITH_ONNX
  if (!onnx.empty()) print_export(export_quantized_file(result.trained_model_path, onnx));
#endif
  return 0;
}

}  // namespace

int run_quantize(int argc, char** argv) {
  return run_guarded([&] { return quantize_main(argc, argv); });
}

}  // namespace pk::cli
