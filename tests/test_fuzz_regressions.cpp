// Every input the fuzzers (tools/fuzz.sh) found a bug with, fed to the loader
// that failed on it: it must load or give a clear error, never crash. The
// files are tests/data/fuzz_regressions/<loader>-<what it is>, <loader> one
// of tests/fuzz/fuzz_loaders.h's names (the fuzz target without "fuzz_").
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_loaders.h"

namespace fs = std::filesystem;

TEST_CASE("fuzz regressions: each saved input loads or fails with a clear error") {
  std::vector<fs::path> inputs;
  for (const auto& entry : fs::directory_iterator(PACKPTQ_SOURCE_DIR "/tests/data/fuzz_regressions"))
    inputs.push_back(entry.path());
  std::sort(inputs.begin(), inputs.end());
  REQUIRE(!inputs.empty());
  for (const fs::path& input : inputs) {
    const std::string name = input.filename().string();
    const auto loader = pk::fuzz::loaders().find(name.substr(0, name.find('-')));
    REQUIRE_MESSAGE(loader != pk::fuzz::loaders().end(), name << " names no loader");
    const std::string error = pk::fuzz::try_load(loader->second, input.string());
    MESSAGE(name << ": " << (error.empty() ? "loaded" : error));
  }
}
