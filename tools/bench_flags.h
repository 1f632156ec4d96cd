// Flag values of the benchmark programs (bench_recon, bench_infer): the
// text after a flag, or a whole number, with the program's usage on error.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace pk {

struct BenchFlags {
  const char* program;
  int argc;
  char** argv;
  void (*usage)();  // prints the usage and exits

  // The argument after argv[i], advancing i to it.
  std::string text(int& i, const char* flag) const {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", program, flag);
      usage();
      std::exit(2);
    }
    return argv[++i];
  }

  // A whole positive number (0 too where zero_ok: --threads 0 is all cores).
  int64_t number(int& i, const char* flag, bool zero_ok = false) const {
    const std::string v = text(i, flag);
    char* end = nullptr;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < (zero_ok ? 0 : 1)) {
      std::fprintf(stderr, "%s: %s needs a %s number, got '%s'\n", program, flag,
                   zero_ok ? "non-negative" : "positive", v.c_str());
      usage();
      std::exit(2);
    }
    return static_cast<int64_t>(n);
  }
};

}  // namespace pk
