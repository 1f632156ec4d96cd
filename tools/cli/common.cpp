#include "tools/cli/common.h"

#include <cstdio>
#include <exception>
#include <string>

#include "engine/errors.h"
#include "engine/interrupt.h"
#include "engine/log.h"

namespace pk::cli {

namespace {

// To stderr, and into the run's log when one is open, so that the log of a
// failed run says why it stopped.
void print_error(const std::string& message) {
  const std::string folded = one_line(message);
  std::fprintf(stderr, "packptq: error: %s\n", folded.c_str());
  std::fflush(stderr);
  log_file_line("error: " + folded);
}

// Closes the run's log however a command ends, after its error is logged.
struct LogFileCloser {
  ~LogFileCloser() { close_log_file(); }
};

}  // namespace

int run_guarded(const std::function<int()>& body) {
  LogFileCloser closer;
  try {
    return body();
  } catch (const ConfigError& e) {
    print_error(e.what());
    return 2;
  } catch (const Interrupted& e) {
    print_error(e.what());
    return 130;  // as a shell reports a process ended by SIGINT
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  } catch (...) {
    print_error("unknown failure");
    return 1;
  }
}

}  // namespace pk::cli
