// packptq export: a quantized model file, or a float checkpoint, as an ONNX
// model, through export_model() (quant/onnx/export_run.h). Built without
// libonnx-dev, the command says so.
#include <cstdio>
#include <iostream>

#include "engine/errors.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"
#if PACKPTQ_WITH_ONNX
#include "quant/onnx/export_run.h"
#endif

namespace pk::cli {

#if PACKPTQ_WITH_ONNX
void print_export(const OnnxExportResult& result) {
  std::printf("wrote %s: %lld nodes, %lld quantized weights, %lld quantized activations, "
              "%.1f MB, %.2f s\n",
              result.path.c_str(), static_cast<long long>(result.nodes),
              static_cast<long long>(result.quantized_weights),
              static_cast<long long>(result.quantized_activations),
              static_cast<double>(result.bytes) / 1e6, result.seconds);
  std::fflush(stdout);
}

namespace {

int export_main(int argc, char** argv) {
  ExportConfig config;
  FlagSet flags("packptq export");
  declare_settings(flags, export_settings(), config);
  if (!flags.parse(argc, argv, 1)) {
    std::cout << "Writes a quantized model file (--quantized) or a float checkpoint "
                 "(--model_name, --weights) as an ONNX model with QuantizeLinear/"
                 "DequantizeLinear pairs.\n"
              << flags.help();
    return 0;
  }
  apply_settings(flags, export_settings(), config);
  print_export(export_model(config));
  return 0;
}

}  // namespace

int run_export(int argc, char** argv) {
  return run_guarded([&] { return export_main(argc, argv); });
}
#else
int run_export(int, char**) {
  return run_guarded([]() -> int { throw ConfigError(kNoOnnxExport); });
}
#endif

}  // namespace pk::cli
