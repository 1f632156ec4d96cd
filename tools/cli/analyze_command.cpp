// packptq analyze: where a quantized model file's error comes from, layer by
// layer (graph-wise and layer-wise SQNR and cosine against the float model),
// and with --packs which pack costs the accuracy, through analyze_model()
// (quant/analysis.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include "engine/parallel.h"
#include "quant/analysis.h"
#include "tools/cli/commands.h"
#include "tools/cli/common.h"
#include "tools/cli/flags.h"

namespace pk::cli {

namespace {

std::string decibels(double db) {
  if (std::isinf(db)) return db > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", db);
  return buf;
}

void print_analysis(const ErrorAnalysis& analysis) {
  size_t layer_width = 5, unit_width = 4;
  for (const LayerError& e : analysis.graph_wise) {
    layer_width = std::max(layer_width, e.layer.size());
    unit_width = std::max(unit_width, e.unit.size());
  }
  const int lw = static_cast<int>(layer_width), uw = static_cast<int>(unit_width);
  std::printf("SQNR (dB) and cosine of each layer's output against the float model, %lld images\n",
              static_cast<long long>(analysis.images));
  std::printf("%-*s  %-*s  %10s  %8s  %10s  %8s\n", lw, "layer", uw, "unit", "graph SQNR", "cosine",
              "layer SQNR", "cosine");
  for (size_t i = 0; i < analysis.graph_wise.size(); ++i) {
    const LayerError& g = analysis.graph_wise[i];
    const LayerError& l = analysis.layer_wise[i];
    std::printf("%-*s  %-*s  %10s  %8.5f  %10s  %8.5f\n", lw, g.layer.c_str(), uw, g.unit.c_str(),
                decibels(g.sqnr_db).c_str(), g.cosine, decibels(l.sqnr_db).c_str(), l.cosine);
  }
  for (const PackAblation& p : analysis.packs)
    std::printf("pack %s in float: top-1 %.2f\n", p.pack.c_str(), p.top1);
}

int analyze_main(int argc, char** argv) {
  AnalyzeConfig config;
  config.threads = threads_from_env();
  FlagSet flags("packptq analyze");
  declare_settings(flags, analyze_settings(), config);
  if (!flags.parse(argc, argv, 1)) {
    std::cout << "Compares each quantized layer's output with the float model's on the first "
                 "--images images of <dataset_path>/<split>: graph-wise (the whole model "
                 "quantized) and layer-wise (only that layer quantized).\n"
              << flags.help();
    return 0;
  }
  apply_settings(flags, analyze_settings(), config);
  print_analysis(analyze_model(config));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int run_analyze(int argc, char** argv) {
  return run_guarded([&] { return analyze_main(argc, argv); });
}

}  // namespace pk::cli
