// The one-call library API (quant/run.h, quant/run_config.h): quantize() on a
// fixture gives a result struct that is its report, tells its observer every
// phase, target and file, and equals the command line's run with the same
// settings; the settings table is the one source of the flags, their
// defaults and their validation.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "engine/errors.h"
#include "quant/report_html.h"
#include "quant/run.h"
#include "tests/fixture_runs.h"
#include "tests/testing.h"
#include "tools/cli/commands.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return nlohmann::json::parse(in);
}

// The message of the ConfigError that validate() throws for `config`.
std::string validation_error(const QuantizeConfig& config) {
  try {
    validate(config);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

QuantizeConfig quick_config(const fs::path& dataset, const fs::path& output_dir) {
  QuantizeConfig config = testing::fixture_run_config("resnet18_w16", 4, 10, output_dir);
  config.dataset_path = dataset.string();
  config.weights = (testing::fixture_model_dir("resnet18_w16") / "model.pth").string();
  config.analysis_images = QuantizeConfig().analysis_images;
  config.report_json = (output_dir / "report.json").string();
  return config;
}

}  // namespace

TEST_CASE("quantize(): the result is the report, the observer sees the run, the CLI agrees") {
  TempDir dir;
  const fs::path dataset = dir.path / "dataset";
  testing::link_image_subset(testing::fixtures_dir() / "fashion32", dataset, "train", 16);
  testing::link_image_subset(testing::fixtures_dir() / "fashion32", dataset, "val", 8);
  const QuantizeConfig config = quick_config(dataset, dir.path / "api");

  std::vector<std::string> phases, saved;
  std::vector<std::string> targets;
  const QuantizeResult result = quantize(config, [&](const RunEvent& event) {
    const std::string phase = run_phase_name(event.phase);
    switch (event.kind) {
      case RunEvent::Kind::PhaseStarted:
        phases.push_back("+" + phase);
        break;
      case RunEvent::Kind::PhaseFinished:
        phases.push_back("-" + phase);
        break;
      case RunEvent::Kind::TargetFinished:
        REQUIRE(event.result != nullptr);
        CHECK(event.target_index == static_cast<int64_t>(targets.size()));
        targets.push_back(event.result->name);
        break;
      case RunEvent::Kind::FileSaved:
        saved.push_back(event.path);
        break;
    }
  });

  // Every phase, in order; pack needs scores, no mixed precision here.
  CHECK(phases == std::vector<std::string>{"+data", "-data", "+fp32_eval", "-fp32_eval", "+init",
                                           "-init", "+scoring", "-scoring", "+reconstruction",
                                           "-reconstruction", "+quant_eval", "-quant_eval", "+analysis",
                                           "-analysis", "+save", "-save"});
  REQUIRE(targets.size() == result.reconstruction.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    const ReconResult& r = result.reconstruction[i];
    CHECK(targets[i] == r.name);
    // Ten iterations: every one is a point of the loss curve.
    REQUIRE(r.curve.size() == 10);
    CHECK(r.curve.back().iteration == 10);
    CHECK(r.curve.front().beta == 20.0);  // warm-up: the start temperature, no rounding loss
    CHECK(r.curve.front().rounding == 0.0);
  }
  // The initialized model, a checkpoint after each target (one file,
  // rewritten, removed once the run is complete), the results.
  std::vector<std::string> expected_files = {result.inited_model_path};
  const std::string checkpoint = (fs::path(result.trained_model_path).parent_path().parent_path() /
                                  "checkpoints" / fs::path(result.trained_model_path).filename())
                                     .string();
  expected_files.insert(expected_files.end(), targets.size(), checkpoint);
  for (const std::string& path : {result.trained_model_path, config.report_json, result.html_path})
    expected_files.push_back(path);
  CHECK(saved == expected_files);
  CHECK_FALSE(fs::exists(checkpoint));
  CHECK(fs::path(result.html_path).stem() == fs::path(result.log_path).stem());
  for (const std::string& path :
       {result.log_path, result.inited_model_path, result.trained_model_path, result.html_path})
    CHECK_MESSAGE(fs::is_regular_file(path), path);

  // The report file is the struct's serialization, figure by figure.
  const nlohmann::json report = read_json(config.report_json);
  CHECK(report == report_to_json(result));
  CHECK(report["fp32_top1"].get<double>() == result.fp32.top1);
  CHECK(report["quant_top1"].get<double>() == result.quantized.top1);
  CHECK(report["val_images"].get<int64_t>() == 80);
  REQUIRE(report["packs"].size() == result.packs.size());
  for (size_t i = 0; i < result.packs.size(); ++i) {
    CHECK(report["packs"][i]["units"].get<std::vector<std::string>>() == result.packs[i].units);
    CHECK(report["packs"][i]["bits"]["weight"].get<int>() == 4);
  }
  REQUIRE(report["reconstruction"].size() == result.reconstruction.size());
  for (size_t i = 0; i < result.reconstruction.size(); ++i)
    CHECK(report["reconstruction"][i]["final_loss"].get<double>() ==
          result.reconstruction[i].final_loss);
  CHECK(result.fp32.top1 > 80.0);
  CHECK(result.average_bits == doctest::Approx(4.0));
  CHECK(result.config.threads == 2);
  // The error analysis on the default 32 images, every quantized layer once.
  REQUIRE(result.analysis.has_value());
  CHECK(result.analysis->images == 32);
  CHECK(result.analysis->graph_wise.size() == result.layers.size());
  CHECK(report["analysis"]["layer_wise"].size() == result.layers.size());

  // The page beside the log: every chart there with data points, nothing
  // loaded from elsewhere.
  std::ifstream html_file(result.html_path);
  const std::string html((std::istreambuf_iterator<char>(html_file)), std::istreambuf_iterator<char>());
  CHECK(html == render_report_html(report));
  for (const char* id : {"chart-phases", "chart-unit-scores", "chart-unit-terms", "chart-pack-bits",
                         "chart-final-loss", "chart-curve-0", "chart-layer-scales",
                         "chart-layer-bits", "chart-sqnr", "chart-cosine"}) {
    const size_t begin = html.find("<svg id=\"" + std::string(id) + "\"");
    REQUIRE_MESSAGE(begin != std::string::npos, id);
    const std::string svg = html.substr(begin, html.find("</svg>", begin) - begin);
    const bool has_data = svg.find("class=\"pt\"") != std::string::npos ||
                          svg.find("class=\"bar\"") != std::string::npos ||
                          svg.find("class=\"line\"") != std::string::npos;
    CHECK_MESSAGE(has_data, id);
  }
  CHECK(html.find("Content-Security-Policy") != std::string::npos);
  for (const char* outside : {"http:", "https:", "<script", "src=", "url("})
    CHECK_MESSAGE(html.find(outside) == std::string::npos, outside);

  // The command line with the same settings: the same figures and packs.
  const fs::path cli_out = dir.path / "cli";
  const fs::path model = testing::fixtures_dir() / "models" / "resnet18_w16";
  REQUIRE(testing::run_command(cli::run_quantize, {"quantize",
                                                   "--dataset_path",
                                                   dataset.string(),
                                                   "--model_name",
                                                   "resnet18",
                                                   "--model_config",
                                                   (model / "config.json").string(),
                                                   "--weights",
                                                   (model / "model.pth").string(),
                                                   "--weight_bits",
                                                   "4",
                                                   "--activation_bits",
                                                   "4",
                                                   "--weight_channel_wise",
                                                   "--calibration_samples",
                                                   "64",
                                                   "--calibration_iterations",
                                                   "10",
                                                   "--threads",
                                                   "2",
                                                   "--output_dir",
                                                   cli_out.string(),
                                                   "--report_json",
                                                   (cli_out / "report.json").string()}) == 0);
  nlohmann::json from_cli = read_json((cli_out / "report.json").string());
  nlohmann::json from_api = report;
  for (nlohmann::json* r : {&from_cli, &from_api}) {
    r->erase("timing");
    (*r)["config"].erase("output_dir");
    (*r)["config"].erase("report_json");
  }
  CHECK(from_cli == from_api);
}

TEST_CASE("QuantizeConfig: the reference's defaults, one table for flags, JSON and validation") {
  const QuantizeConfig defaults;
  const nlohmann::json json = config_to_json(defaults);
  CHECK(json.size() == quantize_settings().size());
  CHECK(json["batch_size"] == 16);
  CHECK(json["calibration_samples"] == 1024);
  CHECK(json["calibration_iterations"] == 20000);
  CHECK(json["seed"] == 1005);
  CHECK(json["weight_bits"] == 3);
  CHECK(json["activation_bits"] == 3);
  CHECK(json["reconstruction_weight"] == 0.01);
  CHECK(json["temperature_start"] == 20.0);
  CHECK(json["temperature_end"] == 2.0);
  CHECK(json["warmup_ratio"] == 0.2);
  CHECK(json["learning_rate"] == 4e-5);
  CHECK(json["input_stochastic_prob"] == 0.5);
  CHECK(json["method"] == "pack");
  CHECK(json["weight_init_method"] == "mse");
  CHECK(json["device"] == "cpu");

  // Each setting reads back what it writes, and names itself when it cannot.
  QuantizeConfig copy;
  for (const ConfigSetting& setting : quantize_settings()) setting.set(copy, setting.get(defaults));
  CHECK(config_to_json(copy) == json);
  auto setting = [](const std::string& name) {
    const auto& all = quantize_settings();
    return *std::find_if(all.begin(), all.end(),
                         [&](const ConfigSetting& s) { return s.name == name; });
  };
  CHECK_THROWS_WITH_AS(setting("method").set(copy, "pack-ptq"), doctest::Contains("--method"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(setting("weight_init_method").set(copy, "max"),
                       doctest::Contains("--weight_init_method"), ConfigError);
  CHECK_THROWS_WITH_AS(setting("device").set(copy, "tpu"),
                       "--device must be cpu or cuda, got 'tpu'", ConfigError);
  CHECK_THROWS_WITH_AS(setting("batch_size").set(copy, "sixteen"),
                       doctest::Contains("--batch_size"), ConfigError);
  setting("method").set(copy, "qdrop");
  CHECK(copy.method == Method::QDrop);

  // The command line's messages, from validate().
  QuantizeConfig config;
  CHECK(validation_error(config) == "--dataset_path is required (see --help)");
  config.dataset_path = "data";
  CHECK(validation_error(config) == "--model_name is required (see --help)");
  config.model_name = "resnet18";
  CHECK(validation_error(config) ==
        "--weights is required unless --pretrained_model_path gives the model");
  config.weights = "model.pth";
  CHECK(validation_error(config) == "");
  QuantizeConfig bad = config;
  bad.batch_size = 0;
  CHECK(validation_error(bad) == "--batch_size must be at least 1, got 0");
  bad = config;
  bad.weight_bits = 9;
  CHECK(validation_error(bad) == "--weight_bits must be 2..8, got 9");
  bad = config;
  bad.warmup_ratio = 1.5;
  CHECK(validation_error(bad) == "--warmup_ratio must be in [0, 1], got 1.5");
  bad = config;
  bad.temperature_end = 0;
  CHECK(validation_error(bad) == "--temperature_end must be greater than 0, got 0");
  bad = config;
  bad.calibration_iterations = 0;
  CHECK(validation_error(bad) ==
        "--calibration_iterations must be at least 1 (or --method rtn), got 0");
  bad.method = Method::Rtn;
  CHECK(validation_error(bad) == "");
  bad = config;
  bad.enable_mixed_precision = true;
  bad.weight_bits = 4;
  CHECK(validation_error(bad) ==
        "--enable_mixed_precision needs --weight_bits equal to --activation_bits, 3, 4 or 6; got "
        "4 and 3");
  bad = config;
  bad.pretrained_model_path = "inited.safetensors";
  CHECK(validation_error(bad) ==
        "--weights and --model_config cannot be combined with --pretrained_model_path, whose "
        "file holds the model");

  // What the pipeline gets.
  config.weight_bits = 4;
  config.calibration_iterations = 500;
  config.keep_soft_rounding = true;
  CHECK(config.quant_settings().weight_bits == 4);
  CHECK(config.recon_options().iterations == 500);
  CHECK(config.recon_options().batch_size == 16);
  CHECK(config.pipeline_options().recon.keep_soft_rounding);
}
