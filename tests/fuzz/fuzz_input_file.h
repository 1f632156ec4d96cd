// The loaders read paths: each fuzz input is written to one file per process
// and the loader pointed at it.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace pk::fuzz {

inline std::string write_input_file(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::string path = (std::filesystem::temp_directory_path() /
                                   ("packptq_fuzz_" + std::to_string(getpid()) + suffix))
                                      .string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::perror("fuzz: cannot write the input file");
    std::abort();
  }
  return path;
}

}  // namespace pk::fuzz
