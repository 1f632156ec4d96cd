// What the packptq commands share: turning a command's failures into
// one-line errors and exit codes.
#pragma once

#include <functional>

#if PACKPTQ_WITH_ONNX
#include "quant/onnx/onnx_export.h"
#endif

namespace pk::cli {

// Runs a command body and maps failures to exit codes: ConfigError (an
// invalid flag or setting) prints "packptq: error: ..." and returns 2,
// Interrupted (ctrl-C) prints how to resume and returns 130, any other
// exception prints it and returns 1. Messages are folded onto one line
// and also go to the run's log when one is open.
int run_guarded(const std::function<int()>& body);

// The error of --export_onnx and `packptq export` in a build without ONNX.
inline constexpr const char* kNoOnnxExport =
    "this packptq was built without ONNX export: install libonnx-dev (tools/setup_debian.sh) "
    "and build again";

#if PACKPTQ_WITH_ONNX
// Prints an export's file, size and counts on one line.
void print_export(const OnnxExportResult& result);
#endif

}  // namespace pk::cli
