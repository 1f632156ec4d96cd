// The packptq subcommands. Each takes the arguments after the program name
// (argv[0] is the command's own name, flags start at argv[1]), prints its
// errors as "packptq: error: ..." and returns the process exit code: 0 on
// success, 2 for usage errors, 1 for any other failure.
#pragma once

namespace pk::cli {

// packptq eval: FP32 top-1/top-5 of a checkpoint on an ImageFolder split.
int run_eval(int argc, char** argv);

// packptq analyze: per-layer error of a quantized model file against the
// float model (tools/cli/analyze_command.cpp).
int run_analyze(int argc, char** argv);

// packptq [quantize]: the Pack-PTQ run (tools/cli/quantize_command.cpp).
int run_quantize(int argc, char** argv);

// packptq export: a quantized model file or a float checkpoint as ONNX
// (tools/cli/export_command.cpp).
int run_export(int argc, char** argv);

// packptq report RUN.json -o RUN.html: a run's report JSON as its HTML page.
int run_report(int argc, char** argv);

// packptq with no arguments, or packptq default: the built-in Fashion-MNIST
// run (tools/cli/default_run.cpp).
int run_default(int argc, char** argv);

}  // namespace pk::cli
