// Error analysis (quant/analysis.h) on the resnet18_w16 fixture with
// round-to-nearest quantizers: a layer left in float is exact, the error at
// the logits grows as bits fall, the JSON spells infinity, and `packptq
// analyze` on a trained model file reproduces the analysis in memory.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/errors.h"
#include "nets/load_model.h"
#include "quant/analysis.h"
#include "quant/model_io.h"
#include "tests/testing.h"
#include "tools/cli/commands.h"
#include "tools/data/evaluate.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kModel = testing::fixtures_dir() / "models" / "resnet18_w16";
const fs::path kFashion = testing::fixtures_dir() / "fashion32";
constexpr double kInf = std::numeric_limits<double>::infinity();

std::shared_ptr<Net> load_fixture() {
  return load_model("resnet18", (kModel / "config.json").string(), (kModel / "model.pth").string());
}

// The first n images of a split, in ImageFolder order, as analyze_model
// takes them.
Tensor first_images(const Net& net, const std::string& split, size_t n) {
  const data::ImageFolder folder = data::scan_image_folder(kFashion.string(), split);
  return data::load_batch(folder.samples, 0, n, data::preprocess_config(net.preprocess())).images;
}

// A round-to-nearest model: quantizers initialized on 32 training images.
struct RtnModel {
  std::shared_ptr<Net> net;
  std::unique_ptr<QuantModel> model;
  std::map<std::string, Tensor> float_weights;
};

RtnModel rtn_model(int bits) {
  RtnModel m;
  m.net = load_fixture();
  QuantSettings settings;
  settings.weight_bits = settings.activation_bits = bits;
  m.model = std::make_unique<QuantModel>(m.net, settings, false);
  m.model->initialize(first_images(*m.net, "train", 32));
  m.float_weights = layer_weights(*m.model);
  return m;
}

std::vector<float> logits_of(Net& net, const Tensor& images) {
  NoGradGuard no_grad;
  return net.forward(images).to_vector();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("a layer with its quantizers off has infinite SQNR, the model is left as found") {
  RtnModel m = rtn_model(4);
  QuantModel& model = *m.model;
  const Net& net = model.net();
  // The first two units in float (graph-wise exact there too), and one unit
  // further on, whose inputs are quantized already (exact only layer-wise).
  const int64_t later = 4;
  for (int64_t t : {int64_t{0}, int64_t{1}, later}) model.set_unit_quant(t, false, false);
  REQUIRE(!model.unit_layers(later).empty());

  const Tensor images = first_images(net, "val", 24);
  const std::vector<float> logits_before = logits_of(model.net(), images);
  std::map<std::string, std::vector<float>> weights_before;
  for (const auto& [name, w] : m.float_weights) weights_before[name] = w.to_vector();

  const ErrorAnalysis analysis = analyze_errors(model, m.float_weights, images);
  CHECK(analysis.images == 24);
  REQUIRE(analysis.graph_wise.size() == model.layers().size());
  REQUIRE(analysis.layer_wise.size() == model.layers().size());
  for (size_t i = 0; i < model.layers().size(); ++i) {
    const QuantLayer& l = model.layers()[i];
    const LayerError& g = analysis.graph_wise[i];
    const LayerError& alone = analysis.layer_wise[i];
    CAPTURE(l.name);
    CHECK(g.layer == l.name);
    CHECK(alone.layer == l.name);
    CHECK(g.unit == net.units()[l.unit].name);
    if (l.unit <= 1) {
      CHECK(g.sqnr_db == kInf);
      CHECK(g.cosine == 1.0);
    } else {
      CHECK(std::isfinite(g.sqnr_db));
      CHECK(g.cosine < 1.0);
    }
    if (l.unit <= 1 || l.unit == later) {
      CHECK(alone.sqnr_db == kInf);
      CHECK(alone.cosine == 1.0);
    } else {
      CHECK(std::isfinite(alone.sqnr_db));
      CHECK(alone.sqnr_db > 0);
    }
  }
  // Left as found: the same logits bit for bit, the same weights, the same
  // modes.
  CHECK(logits_of(model.net(), images) == logits_before);
  for (const auto& [name, w] : m.float_weights) CHECK(w.to_vector() == weights_before[name]);
  for (const QuantLayer& l : model.layers()) {
    CHECK(l.layer->hook() == l.hook.get());
    const bool off = l.unit <= 1 || l.unit == later;
    CHECK(l.hook->mode() == (off ? QuantMode::Float : QuantMode::Quantized));
  }

  // A model still initializing and a missing float weight are refused, and
  // leave the model as found.
  std::map<std::string, Tensor> missing = m.float_weights;
  missing.erase(model.layers().back().name);
  CHECK_THROWS_WITH_AS(analyze_errors(model, missing, images),
                       doctest::Contains(model.layers().back().name.c_str()),
                       std::invalid_argument);
  CHECK(logits_of(model.net(), images) == logits_before);
}

TEST_CASE("graph-wise SQNR at the last layer falls as bits fall: 8 > 4 > 3") {
  std::map<int, double> last_layer;
  for (int bits : {8, 4, 3}) {
    RtnModel m = rtn_model(bits);
    const ErrorAnalysis analysis =
        analyze_errors(*m.model, m.float_weights, first_images(*m.net, "val", 16));
    last_layer[bits] = analysis.graph_wise.back().sqnr_db;
    for (const LayerError& e : analysis.graph_wise) {
      CAPTURE(e.layer);
      CHECK(std::isfinite(e.sqnr_db));
      CHECK(e.cosine > 0);
      CHECK(e.cosine < 1);
    }
  }
  MESSAGE("last layer SQNR (dB): W8A8 " << last_layer[8] << ", W4A4 " << last_layer[4] << ", W3A3 "
                                        << last_layer[3]);
  CHECK(last_layer[8] > last_layer[4]);
  CHECK(last_layer[4] > last_layer[3]);
  CHECK(last_layer[8] > 20);  // 8 bits are close to float
}

TEST_CASE("analysis_to_json: every layer once, in order, infinity as \"inf\"") {
  RtnModel m = rtn_model(4);
  m.model->set_unit_quant(0, false, false);
  ErrorAnalysis analysis =
      analyze_errors(*m.model, m.float_weights, first_images(*m.net, "val", 8));
  analysis.packs.push_back({"layer1.0..layer1.1", 87.5});
  const nlohmann::json json = nlohmann::json::parse(analysis_to_json(analysis).dump());
  CHECK(json["images"] == 8);
  for (const char* kind : {"graph_wise", "layer_wise"}) {
    CAPTURE(kind);
    REQUIRE(json[kind].size() == m.model->layers().size());
    for (size_t i = 0; i < m.model->layers().size(); ++i) {
      const nlohmann::json& e = json[kind][i];
      const QuantLayer& l = m.model->layers()[i];
      CHECK(e["layer"] == l.name);
      CHECK(e["unit"] == m.net->units()[l.unit].name);
      CHECK(e["cosine"].is_number());
      if (l.unit == 0)
        CHECK(e["sqnr_db"] == "inf");
      else
        CHECK(e["sqnr_db"].is_number());
    }
  }
  CHECK(json["packs"] ==
        nlohmann::json::parse(R"([{"pack": "layer1.0..layer1.1", "top1": 87.5}])"));
}

TEST_CASE("packptq analyze on a trained model file gives the analysis in memory") {
  TempDir dir;
  const fs::path dataset = dir.path / "data";
  testing::link_image_subset(kFashion, dataset, "val", 4);  // 40 images
  RtnModel m = rtn_model(3);
  QuantModel& model = *m.model;
  const nlohmann::json model_config = read_json((kModel / "config.json").string());
  std::vector<std::string> all_units;
  for (const Unit& u : m.net->units()) all_units.push_back(u.name);
  nlohmann::json metadata = {
      {"model_config", model_config},
      {"eval_batch_size", 16},
      {"packs", {{{"units", {"layer1.0", "layer1.1"}}}, {{"units", all_units}}}}};
  const std::string trained = dir.file("trained.safetensors");
  save_quantized_model(trained, model, metadata, /*with_float_weights=*/false);

  const data::ImageFolder val = data::scan_image_folder(dataset.string(), "val");
  const Tensor images =
      data::load_batch(val.samples, 0, 24, data::preprocess_config(m.net->preprocess())).images;
  const ErrorAnalysis in_memory = analyze_errors(model, m.float_weights, images);

  const std::string report = dir.file("analysis.json");
  const std::vector<std::string> args = {"analyze",
                                         "--quantized",
                                         trained,
                                         "--weights",
                                         (kModel / "model.pth").string(),
                                         "--dataset_path",
                                         dataset.string(),
                                         "--images",
                                         "24",
                                         "--packs",
                                         "--threads",
                                         "2",
                                         "--report_json",
                                         report};
  REQUIRE(testing::run_command(cli::run_analyze, args) == 0);
  const nlohmann::json json = read_json(report);
  CHECK(json["model_name"] == "resnet18");
  CHECK(json["weight_bits"] == 3);
  CHECK(json["activation_bits"] == 3);
  CHECK(json["images"] == 24);
  REQUIRE(json["graph_wise"].size() == in_memory.graph_wise.size());
  for (size_t i = 0; i < in_memory.graph_wise.size(); ++i) {
    const LayerError& expected = in_memory.graph_wise[i];
    const nlohmann::json& got = json["graph_wise"][i];
    CAPTURE(expected.layer);
    CHECK(got["layer"] == expected.layer);
    REQUIRE(got["sqnr_db"].is_number());
    CHECK(std::fabs(got["sqnr_db"].get<double>() - expected.sqnr_db) < 1e-4);
    CHECK(std::fabs(got["cosine"].get<double>() - expected.cosine) < 1e-6);
  }
  // With every unit in float, the pack ablation is the float model's top-1.
  REQUIRE(json["packs"].size() == 2);
  CHECK(json["packs"][0]["pack"] == "layer1.0..layer1.1");
  CHECK(json["packs"][1]["pack"] == all_units.front() + ".." + all_units.back());
  const data::EvalResult fp32 = data::evaluate(
      *load_fixture(), val.samples, data::preprocess_config(m.net->preprocess()), 16, "fp32");
  CHECK(json["packs"][1]["top1"].get<double>() == doctest::Approx(fp32.top1));

  // Bad input: a trained file without --weights is a usage error naming the
  // flag; a missing file fails naming it.
  std::vector<std::string> no_weights = args;
  no_weights.erase(no_weights.begin() + 3, no_weights.begin() + 5);
  CHECK(testing::run_command(cli::run_analyze, no_weights) == 2);
  AnalyzeConfig config;
  config.quantized = trained;
  config.dataset_path = dataset.string();
  CHECK_THROWS_WITH_AS(analyze_model(config), doctest::Contains("--weights"), ConfigError);
  std::vector<std::string> missing_file = args;
  missing_file[2] = dir.file("absent.safetensors");
  CHECK(testing::run_command(cli::run_analyze, missing_file) == 1);
  config.quantized = missing_file[2];
  config.weights = (kModel / "model.pth").string();
  CHECK_THROWS_WITH_AS(analyze_model(config), doctest::Contains("absent.safetensors"),
                       std::runtime_error);
  CHECK(testing::run_command(cli::run_analyze, {"analyze", "--dataset_path", "x"}) == 2);
}
