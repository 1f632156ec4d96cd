// What the packptq commands share: turning a command's failures into
// one-line errors and exit codes.
#pragma once

#include <functional>

namespace pk::cli {

// Runs a command body and maps failures to exit codes: ConfigError (an
// invalid flag or setting) prints "packptq: error: ..." and returns 2, any
// other exception prints it and returns 1. Messages are folded onto one line
// and also go to the run's log when one is open.
int run_guarded(const std::function<int()>& body);

}  // namespace pk::cli
