// packptq report RUN.json -o RUN.html: renders a run's report JSON (written
// by `packptq quantize --report_json`) as its HTML page again
// (quant/report_html.h).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/errors.h"
#include "engine/output_files.h"
#include "quant/report_html.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"

namespace pk::cli {

namespace {

const char* const kUsage =
    "usage: packptq report RUN.json -o RUN.html\n"
    "Renders a run's report JSON (--report_json of packptq quantize) as a self-contained HTML "
    "page.\n";

int report_main(int argc, char** argv) {
  std::string input, output;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "-o" || arg == "--output") {
      if (i + 1 >= argc) throw ConfigError(arg + " needs the HTML file to write");
      output = argv[++i];
    } else if (arg.rfind("--output=", 0) == 0) {
      output = arg.substr(9);
    } else if (arg[0] == '-' || !input.empty()) {
      throw ConfigError("unexpected argument '" + arg + "' (packptq report RUN.json -o RUN.html)");
    } else {
      input = arg;
    }
  }
  if (input.empty() || output.empty())
    throw ConfigError(
        "packptq report needs a report JSON and -o HTML: packptq report RUN.json -o "
        "RUN.html");
  check_output_folder(output, "output");
  std::ifstream in(input);
  if (!in) throw std::runtime_error("cannot open report '" + input + "'");
  nlohmann::json report;
  try {
    report = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error("report '" + input + "' is not valid JSON: " + e.what());
  }
  try {
    write_report_html(output, report);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("report '" + input + "': " + e.what());
  }
  std::printf("wrote %s\n", output.c_str());
  return 0;
}

}  // namespace

int run_report(int argc, char** argv) {
  return run_guarded([&] { return report_main(argc, argv); });
}

}  // namespace pk::cli
