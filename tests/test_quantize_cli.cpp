// `packptq quantize` end to end in-process on the resnet18_w16 fixture with a
// small dataset: its outputs (log, inited_models/, trained_models/, report),
// `packptq eval --quantized` reproducing the quantized top-1 exactly, seed
// reproducibility of the report, resuming from an initialized model, and bad
// flags failing before any model or report is written.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/parallel.h"
#include "kernels/kernels.h"
#include "quant/model_io.h"
#include "tests/fixture_runs.h"
#include "tests/testing.h"
#include "tools/cli/commands.h"
#include "tools/data/dataset.h"

using namespace pk;
using pk::testing::link_image_subset;
using pk::testing::run_command;
using pk::testing::TempDir;
using namespace pk::cli;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = testing::fixtures_dir();
const fs::path kModel = kFixtures / "models" / "resnet18_w16";
const fs::path kFashion = kFixtures / "fashion32";

// One dataset for every test: 40 train and 20 val images per class.
const fs::path& dataset() {
  static TempDir dir;
  static bool made = false;
  if (!made) {
    link_image_subset(kFashion, dir.path, "train", 40);
    link_image_subset(kFashion, dir.path, "val", testing::whole_run_val_per_class(20));
    made = true;
  }
  return dir.path;
}

// Flags of a quick W4A4 Pack-PTQ run writing into `out`.
std::vector<std::string> quick_run(const fs::path& out) {
  return {"quantize",
          "--dataset_path", dataset().string(),
          "--model_name", "resnet18",
          "--model_config", (kModel / "config.json").string(),
          "--weights", (kModel / "model.pth").string(),
          "--weight_bits", "4",
          "--activation_bits", "4",
          "--weight_channel_wise",
          "--calibration_samples", "128",
          "--calibration_iterations", "20",
          "--threads", "2",
          "--output_dir", out.string(),
          "--report_json", (out / "report.json").string()};
}

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

std::vector<fs::path> files_in(const fs::path& folder, const std::string& suffix) {
  std::vector<fs::path> out;
  if (!fs::is_directory(folder)) return out;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(entry.path());
  }
  return out;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return nlohmann::json::parse(in);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

nlohmann::json without_timing(nlohmann::json report) {
  report.erase("timing");
  return report;
}

// The run's one trained model records `switch_name` as on, and eval
// --quantized of it reproduces the run's top-1.
void check_trained_model(const fs::path& out, const nlohmann::json& report,
                         const std::string& switch_name) {
  const std::vector<fs::path> trained = files_in(out / "trained_models", ".safetensors");
  REQUIRE(trained.size() == 1);
  CHECK(load_quantized_model(trained[0].string()).metadata[switch_name] == true);
  const fs::path eval_report = out / "eval.json";
  REQUIRE(run_command(run_eval, {"eval", "--quantized", trained[0].string(), "--dataset_path",
                                 dataset().string(), "--threads", "2", "--report_json",
                                 eval_report.string()}) == 0);
  CHECK(read_json(eval_report)["top1"].get<double>() == report["quant_top1"].get<double>());
}

// The quick run, done once and shared by the tests that inspect it.
struct FirstRun {
  TempDir out;
  int status = -1;
  std::vector<fs::path> inited, trained, logs;
  nlohmann::json report;
};

const FirstRun& first_run() {
  static FirstRun run;
  if (run.status < 0) {
    run.status = run_command(run_quantize, quick_run(run.out.path));
    run.inited = files_in(run.out.path / "inited_models", ".safetensors");
    run.trained = files_in(run.out.path / "trained_models", ".safetensors");
    run.logs = files_in(run.out.path, "_resnet18_w4_a4.log");
    if (run.status == 0) run.report = read_json(run.out.path / "report.json");
  }
  REQUIRE(run.status == 0);
  return run;
}

}  // namespace

TEST_CASE("quantize resnet18_w16: log, inited and trained models, report, eval --quantized") {
  const FirstRun& run = first_run();
  const fs::path& out = run.out.path;
  const std::vector<fs::path>& inited = run.inited;
  const std::vector<fs::path>& trained = run.trained;
  const std::vector<fs::path>& logs = run.logs;
  REQUIRE(inited.size() == 1);
  REQUIRE(trained.size() == 1);
  REQUIRE(logs.size() == 1);
  CHECK(trained[0].filename() == inited[0].filename());
  // {timestamp}_{model}_w{w}_a{a}: 20261129_195501_resnet18_w4_a4
  CHECK(trained[0].filename().string().size() == std::string("20261129_195501_resnet18_w4_a4.safetensors").size());
  const std::string log = read_text(logs[0]);
  CHECK(log.find("configuration") != std::string::npos);
  CHECK(log.find("\"calibration_iterations\":20") != std::string::npos);
  CHECK(log.find("reconstruct") != std::string::npos);

  const nlohmann::json& report = run.report;
  for (const char* field : {"fp32_top1", "fp32_top5", "quant_top1", "quant_top5", "method",
                            "model_name", "weight_bits", "activation_bits", "mixed_precision",
                            "seed", "packs", "units", "reconstruction", "average_bits", "timing",
                            "val_images", "config"})
    CHECK_MESSAGE(report.contains(field), "report lacks " << field);
  CHECK(report["method"] == "pack");
  CHECK(report["model_name"] == "resnet18");
  CHECK(report["val_images"] == 10 * testing::whole_run_val_per_class(20));
  CHECK(report["seed"] == 1005);
  CHECK(report["average_bits"].get<double>() == doctest::Approx(4.0));
  CHECK(report["fp32_top1"].get<double>() >= 80.0);
  CHECK(report["quant_top1"].get<double>() >= report["fp32_top1"].get<double>() - 12.0);
  REQUIRE(report["units"].size() == 8);  // layer1.0 ... layer4.1
  CHECK(report["units"][0]["name"] == "layer1.0");
  for (const auto& unit : report["units"])
    for (const char* field : {"name", "kind", "hessian", "omega", "kl"}) CHECK(unit.contains(field));
  size_t packed_units = 0;
  for (const auto& pack : report["packs"]) {
    packed_units += pack["units"].size();
    CHECK(pack["bits"]["weight"] == 4);
    CHECK(pack["bits"]["activation"] == 4);
  }
  CHECK(packed_units == 8);
  // conv1 and fc on their own, plus one reconstruction per pack.
  CHECK(report["reconstruction"].size() == report["packs"].size() + 2);
  for (const char* phase : {"fp32_eval", "init", "scoring", "reconstruction", "quant_eval", "total"})
    CHECK_MESSAGE(report["timing"].contains(phase), "timing lacks " << phase);
  MESSAGE("W4A4 pack: fp32 top-1 " << report["fp32_top1"].get<double>() << ", quantized "
                                   << report["quant_top1"].get<double>() << ", total "
                                   << report["timing"]["total"].get<double>() << " s");

  // The trained model holds integer codes, no float copies of the weights.
  const LoadedQuantModel loaded = load_quantized_model(trained[0].string());
  CHECK_FALSE(loaded.has_float_weights);
  CHECK(loaded.metadata["quant_top1"] == report["quant_top1"]);
  CHECK(load_quantized_model(inited[0].string()).has_float_weights);

  // eval --quantized reloads it and finds the same top-1, exactly.
  const fs::path eval_report = out / "eval.json";
  REQUIRE(run_command(run_eval, {"eval", "--quantized", trained[0].string(), "--dataset_path",
                                 dataset().string(), "--threads", "2", "--report_json",
                                 eval_report.string()}) == 0);
  const nlohmann::json eval = read_json(eval_report);
  CHECK(eval["top1"].get<double>() == report["quant_top1"].get<double>());
  CHECK(eval["top5"].get<double>() == report["quant_top5"].get<double>());
  CHECK(eval["model_name"] == "resnet18");
}

TEST_CASE("quantize --reference_preprocessing: augmented calibration, eval as the run") {
  TempDir out;
  REQUIRE(run_command(run_quantize, with(quick_run(out.path),
                                         {"--reference_preprocessing", "--method", "rtn"})) == 0);
  const nlohmann::json report = read_json(out.path / "report.json");
  CHECK(report["config"]["reference_preprocessing"] == true);
  const std::vector<fs::path> logs = files_in(out.path, "_resnet18_w4_a4.log");
  REQUIRE(logs.size() == 1);
  CHECK(read_text(logs[0]).find("reference preprocessing, augmented") != std::string::npos);

  // FP32 top-1 is that of eval with the same flag (resize 36, crop 32,
  // ImageNet statistics), and eval --quantized takes the flag from the file.
  const fs::path fp32_report = out.path / "fp32.json", quant_report = out.path / "quant.json";
  REQUIRE(
      run_command(run_eval,
                  {"eval", "--model_name", "resnet18", "--model_config",
                   (kModel / "config.json").string(), "--weights", (kModel / "model.pth").string(),
                   "--dataset_path", dataset().string(), "--batch_size", "16", "--threads", "2",
                   "--reference_preprocessing", "--report_json", fp32_report.string()}) == 0);
  CHECK(read_json(fp32_report)["top1"].get<double>() == report["fp32_top1"].get<double>());
  const std::vector<fs::path> trained = files_in(out.path / "trained_models", ".safetensors");
  REQUIRE(trained.size() == 1);
  REQUIRE(run_command(run_eval, {"eval", "--quantized", trained[0].string(), "--dataset_path",
                                 dataset().string(), "--threads", "2", "--report_json",
                                 quant_report.string()}) == 0);
  CHECK(read_json(quant_report)["top1"].get<double>() == report["quant_top1"].get<double>());

  // Quantizers initialized on the augmented images: other activation ranges
  // than the plain run's.
  const LoadedQuantModel plain = load_quantized_model(first_run().inited.at(0).string());
  const LoadedQuantModel augmented =
      load_quantized_model(files_in(out.path / "inited_models", ".safetensors").at(0).string());
  REQUIRE(plain.model->layers().size() == augmented.model->layers().size());
  bool scales_differ = false;
  for (size_t i = 0; i < plain.model->layers().size(); ++i) {
    const auto& a = plain.model->layers()[i].hook->operand_quantizers;
    const auto& b = augmented.model->layers()[i].hook->operand_quantizers;
    for (size_t k = 0; k < a.size(); ++k)
      if (a[k] && b[k])
        scales_differ = scales_differ || a[k]->scale.to_vector() != b[k]->scale.to_vector();
  }
  CHECK(scales_differ);
}

TEST_CASE("quantize --fold_bn: folded convs are quantized, the saved model reloads exactly") {
  TempDir out;
  const std::vector<std::string> args =
      with(quick_run(out.path), {"--fold_bn", "--method", "brecq", "--calibration_iterations", "5"});
  REQUIRE(run_command(run_quantize, args) == 0);
  const nlohmann::json report = read_json(out.path / "report.json");
  CHECK(report["config"]["fold_bn"] == true);
  CHECK(report["fp32_top1"] == first_run().report["fp32_top1"]);  // the same net, folded
  const std::vector<fs::path> logs = files_in(out.path, "_resnet18_w4_a4.log");
  REQUIRE(logs.size() == 1);
  std::ifstream log(logs[0]);
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("folded 20 BatchNorm2d layers") != std::string::npos);  // bn1, 8 x 2, 3 downsample

  check_trained_model(out.path, report, "fold_bn");

  // Resuming its initialized model keeps the folding; asking for it on an
  // unfolded file is refused.
  const std::vector<fs::path> inited = files_in(out.path / "inited_models", ".safetensors");
  REQUIRE(inited.size() == 1);
  TempDir resumed;
  REQUIRE(run_command(run_quantize,
                      {"quantize", "--dataset_path", dataset().string(), "--pretrained_model_path",
                       inited[0].string(), "--calibration_samples", "128", "--threads", "2",
                       "--method", "rtn", "--output_dir", resumed.path.string(), "--report_json",
                       (resumed.path / "report.json").string()}) == 0);
  CHECK(read_json(resumed.path / "report.json")["config"]["fold_bn"] == true);
  const FirstRun& unfolded = first_run();
  REQUIRE(unfolded.inited.size() == 1);
  CHECK(run_command(run_quantize, {"quantize", "--dataset_path", dataset().string(),
                                   "--pretrained_model_path", unfolded.inited[0].string(),
                                   "--fold_bn", "--output_dir", resumed.path.string()}) == 2);
}

TEST_CASE("quantize --keep_soft_rounding: recorded, later targets train on other inputs") {
  const FirstRun& run = first_run();
  TempDir out;
  REQUIRE(run_command(run_quantize, with(quick_run(out.path), {"--keep_soft_rounding"})) == 0);
  const nlohmann::json report = read_json(out.path / "report.json");
  CHECK(report["config"]["keep_soft_rounding"] == true);
  CHECK(run.report["config"]["keep_soft_rounding"] == false);
  // The same packs; conv1 first, alike; the targets after it see conv1's
  // soft rounding.
  CHECK(report["packs"] == run.report["packs"]);
  const nlohmann::json& losses = report["reconstruction"];
  const nlohmann::json& hard_losses = run.report["reconstruction"];
  REQUIRE(losses.size() == hard_losses.size());
  REQUIRE(losses.size() > 2);
  CHECK(losses[0] == hard_losses[0]);
  CHECK(losses[1]["final_loss"] != hard_losses[1]["final_loss"]);

  check_trained_model(out.path, report, "keep_soft_rounding");
}

TEST_CASE("quantize: same flags, seed and threads give the same report apart from its timing") {
  const FirstRun& run = first_run();
  TempDir out;
  REQUIRE(run_command(run_quantize, quick_run(out.path)) == 0);
  nlohmann::json again = read_json(out.path / "report.json");
  CHECK(again["timing"]["started_at"].is_string());
  // The flags name their own output folder; everything else must agree.
  again["config"]["output_dir"] = run.report["config"]["output_dir"];
  again["config"]["report_json"] = run.report["config"]["report_json"];
  CHECK(without_timing(again) == without_timing(run.report));
}

TEST_CASE("quantize resumes from an initialized model with --pretrained_model_path") {
  const FirstRun& run = first_run();
  const nlohmann::json& first = run.report;
  const std::vector<fs::path>& inited = run.inited;
  REQUIRE(inited.size() == 1);

  // Block-wise (BRECQ) from the initialized model: no scoring, one
  // reconstruction per unit. (test_pipeline checks that a resumed run equals
  // the straight one.) Into an --output_dir that does not exist yet, with the
  // report inside it.
  TempDir resumed_root;
  const fs::path resumed_out = resumed_root.path / "resumed";
  const std::vector<std::string> resume = {
      "quantize", "--dataset_path", dataset().string(), "--pretrained_model_path",
      inited[0].string(), "--calibration_samples", "128", "--threads", "2", "--method", "brecq",
      "--calibration_iterations", "5", "--output_dir", resumed_out.string(),
      "--report_json", (resumed_out / "report.json").string()};
  REQUIRE(run_command(run_quantize, resume) == 0);
  const nlohmann::json resumed = read_json(resumed_out / "report.json");
  CHECK(resumed["weight_bits"] == 4);
  CHECK(resumed["model_name"] == "resnet18");
  CHECK(resumed["fp32_top1"] == first["fp32_top1"]);  // float weights came with the file
  CHECK(resumed["units"].empty());
  CHECK(resumed["reconstruction"].size() == 10);  // conv1, 8 blocks, fc
  CHECK(files_in(resumed_out / "inited_models", ".safetensors").empty());
  CHECK(files_in(resumed_out / "trained_models", ".safetensors").size() == 1);

  // Settings that disagree with the file, or a trained model, are refused.
  CHECK(run_command(run_quantize, with(resume, {"--weight_bits", "3"})) == 2);
  CHECK(run_command(run_quantize, with(resume, {"--weights", (kModel / "model.pth").string()})) == 2);
  std::vector<std::string> from_trained = resume;
  from_trained[4] = run.trained.at(0).string();
  CHECK(run_command(run_quantize, from_trained) == 2);
}

TEST_CASE("quantize --method rtn and mixed precision report their bits") {
  TempDir out;
  REQUIRE(run_command(run_quantize, with(quick_run(out.path), {"--method", "rtn",
                                                               "--calibration_iterations", "0",
                                                               "--first_last_8bit"})) == 0);
  const nlohmann::json rtn = read_json(out.path / "report.json");
  CHECK(rtn["reconstruction"].empty());
  CHECK(rtn["packs"].empty());
  CHECK(rtn["average_bits"].get<double>() > 4.0);  // first and last layers at 8 bits

  TempDir mixed_out;
  REQUIRE(run_command(run_quantize, with(quick_run(mixed_out.path),
                                         {"--enable_mixed_precision", "--calibration_iterations",
                                          "5"})) == 0);
  CHECK(files_in(mixed_out.path, "_resnet18_w4_a4_mixed_precision.log").size() == 1);
  const nlohmann::json mixed = read_json(mixed_out.path / "report.json");
  CHECK(mixed["mixed_precision"] == true);
  CHECK(mixed["boundary_bits"] == 6);
  for (const auto& pack : mixed["packs"]) {
    const int bits = pack["bits"]["weight"].get<int>();
    CHECK((bits == 4 || bits == 6));
  }
  CHECK(mixed["average_bits"].get<double>() > 4.0);
  CHECK(mixed["average_bits"].get<double>() <= 5.0 + 1e-9);
}

TEST_CASE("quantize: bad flags fail with a usage error and write no model or report") {
  TempDir out;
  const std::vector<std::string> base = quick_run(out.path);
  std::vector<std::string> no_dataset = base;
  no_dataset.erase(no_dataset.begin() + 1, no_dataset.begin() + 3);
  std::vector<std::vector<std::string>> bad = {
      with(base, {"--weight_bits", "0"}),
      with(base, {"--activation_bits", "9"}),
      with(base, {"--method", "foo"}),
      with(base, {"--enable_mixed_precision", "--weight_bits", "3", "--activation_bits", "4"}),
      with(base, {"--enable_mixed_precision", "--weight_bits", "5", "--activation_bits", "5"}),
      no_dataset,
      with(base, {"--calibration_iterations", "0"}),
      with(base, {"--input_stochastic_prob", "1.5"}),
      with(base, {"--warmup_ratio", "-0.1"}),
      with(base, {"--weight_init_method", "kl"}),
      with(base, {"--device", "tpu"}),
      with(base, {"--no_such_flag", "1"}),
      with(base, {"--model_name", "resnet19"}),
      with(base, {"--calibration_samples", "100000"}),
      with(base, {"--learning_rate", "inf"}),
      with(base, {"--temperature_start", "nan"}),
      with(base, {"--seed", "99999999999999999999"}),
      with(base, {"--batch_size", "-9223372036854775809"}),
  };
  // Where the CUDA backend is built and has a device, --device cuda is valid.
  if (!device_available(Device::CUDA)) bad.push_back(with(base, {"--device", "cuda"}));
  for (const auto& args : bad) {
    std::string line;
    for (const auto& a : args) line += a + " ";
    INFO(line);
    CHECK(run_command(run_quantize, args) != 0);
    CHECK(files_in(out.path / "trained_models", ".safetensors").empty());
    CHECK_FALSE(fs::exists(out.path / "report.json"));
    CHECK(files_in(out.path, ".log").empty());
  }
  // A checkpoint that does not exist fails before any output.
  std::vector<std::string> missing_weights = base;
  missing_weights[8] = (out.path / "missing.pth").string();
  CHECK(run_command(run_quantize, missing_weights) == 1);
  CHECK(files_in(out.path / "inited_models", ".safetensors").empty());
  CHECK(files_in(out.path, ".log").empty());
  CHECK(run_command(run_quantize, {"quantize", "--help"}) == 0);
}

TEST_CASE("quantize: train and val with other class folders are refused before any output") {
  TempDir out;
  const fs::path root = out.path / "dataset";
  link_image_subset(kFashion, root, "train", 1);
  link_image_subset(kFashion, root, "val", 1);
  const std::string last_class = data::scan_image_folder(kFashion.string(), "val").classes.back();
  fs::rename(root / "val" / last_class, root / "val" / "zz_other");
  std::vector<std::string> args = quick_run(out.path / "run");
  args[2] = root.string();
  args[15] = "4";  // --calibration_samples
  CHECK(run_command(run_quantize, args) == 1);
  CHECK_FALSE(fs::exists(out.path / "run"));
}

TEST_CASE("quantize: a run that fails midway says why in its log and saves no trained model") {
  // A dataset whose val/ holds a corrupt JPEG: the FP32 evaluation, after
  // the log is opened, stops on it.
  TempDir out;
  const fs::path root = out.path / "dataset";
  link_image_subset(kFashion, root, "train", 2);
  link_image_subset(kFashion, root, "val", 1);
  const std::string first_class = data::scan_image_folder(kFashion.string(), "val").classes.at(0);
  const fs::path corrupt = root / "val" / first_class / "000000_corrupt.jpg";
  std::ofstream(corrupt) << "not a JPEG";
  std::vector<std::string> args = quick_run(out.path / "run");
  args[2] = root.string();
  args[15] = "4";  // --calibration_samples
  CHECK(run_command(run_quantize, args) == 1);
  const std::vector<fs::path> logs = files_in(out.path / "run", ".log");
  REQUIRE(logs.size() == 1);
  const std::string log = read_text(logs[0]);
  CHECK(log.find("error: ") != std::string::npos);
  CHECK(log.find("000000_corrupt.jpg") != std::string::npos);
  CHECK(files_in(out.path / "run" / "trained_models", ".safetensors").empty());
  CHECK_FALSE(fs::exists(out.path / "run" / "report.json"));
}
