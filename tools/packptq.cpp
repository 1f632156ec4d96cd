// packptq: post-training quantization of vision nets (Pack-PTQ) and FP32
// evaluation of their checkpoints.
//
//   packptq [quantize] --model_name ... --dataset_path ... --weights ...
//   packptq eval --model_name ... --weights ... --dataset_path ...
//   packptq analyze --quantized MODEL.safetensors --weights ... --dataset_path ...
//   packptq export --quantized MODEL.safetensors --onnx MODEL.onnx
//   packptq report RUN.json -o RUN.html   a run's report as its HTML page
//   packptq [default [flags]]   the built-in Fashion-MNIST run (no download)
//   packptq --version           version and backends
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "kernels/kernels.h"
#include "quant/run.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  // An instruction set forced through PACKPTQ_CPU_ISA that this CPU lacks.
  try {
    pk::cpu_isa();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "packptq: error: %s\n", e.what());
    return 2;
  }
  if (argc == 1) return pk::cli::run_default(argc, argv);
  const char* command = argv[1];
  if (std::strcmp(command, "--version") == 0) {
    std::string isas;
    for (const std::string& isa : pk::cpu_isas()) isas += (isas.empty() ? "" : ", ") + isa;
    std::printf("packptq %s\ncpu kernels: %s\ncpu instruction sets: %s (in use: %s)\n"
                "backends: cpu%s\nonnx export: %s\n",
                pk::packptq_version(), pk::kernel_path(pk::Device::CPU).c_str(), isas.c_str(),
                pk::cpu_isa().c_str(),
                !pk::cuda_backend_built()                ? " (cuda not built)"
                : pk::device_available(pk::Device::CUDA) ? ", cuda"
                                                         : ", cuda (built; no GPU found)",
                PACKPTQ_WITH_ONNX ? "yes" : "no (built without libonnx-dev)");
    return 0;
  }
  if (std::strcmp(command, "eval") == 0) return pk::cli::run_eval(argc - 1, argv + 1);
  if (std::strcmp(command, "analyze") == 0) return pk::cli::run_analyze(argc - 1, argv + 1);
  if (std::strcmp(command, "default") == 0) return pk::cli::run_default(argc - 1, argv + 1);
  if (std::strcmp(command, "report") == 0) return pk::cli::run_report(argc - 1, argv + 1);
  if (std::strcmp(command, "export") == 0) return pk::cli::run_export(argc - 1, argv + 1);
  // Anything that is not a flag must name a command.
  if (command[0] != '\0' && command[0] != '-' && std::strcmp(command, "quantize") != 0) {
    std::fprintf(stderr,
                 "packptq: error: unknown command '%s' (commands: quantize, eval, analyze, export, "
                 "report, default)\n",
                 command);
    return 2;
  }
  // `packptq quantize FLAGS` and `packptq FLAGS` are the same run.
  if (std::strcmp(command, "quantize") == 0) return pk::cli::run_quantize(argc - 1, argv + 1);
  return pk::cli::run_quantize(argc, argv);
}
