// The Pack-PTQ pipeline end to end on the fixtures (a CNN, a ViT and a Swin):
// RTN close to FP32, Pack-PTQ and every baseline method running with few
// iterations, the Hessian packs, pack-wise mixed precision, quantized model
// files that reproduce the logits bit for bit, and seed reproducibility.
// Few calibration images and iterations keep it fast; accuracy bounds are
// loose where so few iterations cannot promise more.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/parallel.h"
#include "engine/safetensors.h"
#include "quant/model_io.h"
#include "quant/pipeline.h"
#include "tests/testing.h"
#include "tools/data/dataset.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = testing::fixtures_dir();
const fs::path kFashion = kFixtures / "fashion32";
constexpr int64_t kCalibration = 128;
constexpr uint64_t kSeed = 1005;

nlohmann::json fixture_config(const std::string& fixture) {
  std::ifstream in(kFixtures / "models" / fixture / "config.json");
  REQUIRE_MESSAGE(in.good(), "cannot open the config of " << fixture);
  return nlohmann::json::parse(in);
}

std::shared_ptr<Net> load_fixture(const std::string& fixture) {
  const nlohmann::json config = fixture_config(fixture);
  auto net = create_net(config.at("model_name").get<std::string>(), config);
  net->load_state_dict(
      load_checkpoint((kFixtures / "models" / fixture / "model.safetensors").string()));
  net->eval();
  return net;
}

// Calibration images and 200 val images (every fifth: 20 per class),
// preprocessed as the fixture's model expects.
struct Data {
  Tensor calibration;
  Tensor val_images;
  std::vector<int64_t> val_labels;
};

const Data& fixture_data(const Net& net) {
  static std::map<std::string, Data> cache;
  const data::PreprocessConfig preprocess = data::preprocess_config(net.preprocess());
  const std::string key =
      std::to_string(preprocess.mean[0]) + "/" + std::to_string(preprocess.input_size);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  static const data::ImageFolder train = data::scan_image_folder(kFashion.string(), "train");
  static const data::ImageFolder val = data::scan_image_folder(kFashion.string(), "val");
  const std::vector<data::Sample> calibration =
      data::sample_calibration(train.samples, kCalibration, kSeed);
  std::vector<data::Sample> subset;
  for (size_t i = 0; i < val.samples.size(); i += 5) subset.push_back(val.samples[i]);
  Data d;
  d.calibration = data::load_batch(calibration, 0, calibration.size(), preprocess).images;
  const data::Batch batch = data::load_batch(subset, 0, subset.size(), preprocess);
  d.val_images = batch.images;
  d.val_labels = batch.labels.to_int64_vector();
  return cache.emplace(key, d).first->second;
}

// A W4A4 model of the fixture, its quantizers initialized on the first 16 of
// the 48 calibration images it keeps for reconstruction.
struct InitializedModel {
  std::shared_ptr<Net> net;
  std::unique_ptr<QuantModel> model;
  Tensor calibration;
  std::vector<int64_t> packable;
};

InitializedModel initialized_w4(const std::string& fixture, bool channel_wise) {
  InitializedModel m;
  m.net = load_fixture(fixture);
  QuantSettings settings;
  settings.weight_bits = settings.activation_bits = 4;
  settings.weight_channel_wise = channel_wise;
  m.model = std::make_unique<QuantModel>(m.net, settings, false);
  m.calibration = slice_rows(fixture_data(*m.net).calibration, 0, 48);
  m.model->initialize(slice_rows(m.calibration, 0, 16));
  m.packable = packable_units(*m.net);
  REQUIRE(m.packable.size() >= 2);
  return m;
}

Tensor logits_of(Net& net, const Tensor& images) {
  NoGradGuard no_grad;
  std::vector<Tensor> parts;
  for (int64_t b = 0; b < images.size(0); b += 50)
    parts.push_back(net.forward(slice_rows(images, b, std::min<int64_t>(50, images.size(0) - b))));
  return concat(parts, 0);
}

double top1(Net& net, const Data& d) {
  const std::vector<float> logits = logits_of(net, d.val_images).to_vector();
  const size_t n = d.val_labels.size(), classes = logits.size() / n;
  size_t correct = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* row = logits.data() + i * classes;
    correct += static_cast<int64_t>(std::max_element(row, row + classes) - row) == d.val_labels[i];
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

struct Run {
  std::shared_ptr<Net> net;
  std::unique_ptr<QuantModel> model;
  PipelineReport report;
  double fp32 = 0, rtn = 0, quantized = 0;
};

struct RunConfig {
  Method method = Method::Pack;
  int bits = 4;
  bool mixed_precision = false;
  bool channel_wise = true;
  bool first_last_8bit = false;
  int64_t iterations = 30;
  uint64_t seed = kSeed;
  bool eval_rtn = false;  // top-1 of the initialized model too
  bool keep_soft_rounding = false;
};

Run run(const std::string& fixture, const RunConfig& rc) {
  Run r;
  r.net = load_fixture(fixture);
  const Data& d = fixture_data(*r.net);
  static std::map<std::string, double> fp32_of;
  if (!fp32_of.count(fixture)) fp32_of[fixture] = top1(*r.net, d);
  r.fp32 = fp32_of[fixture];
  QuantSettings settings;
  settings.weight_bits = settings.activation_bits = rc.bits;
  settings.weight_channel_wise = rc.channel_wise;
  r.model = std::make_unique<QuantModel>(r.net, settings, rc.first_last_8bit);
  PipelineOptions options;
  options.method = rc.method;
  options.mixed_precision = rc.mixed_precision;
  options.recon.iterations = rc.iterations;
  options.recon.keep_soft_rounding = rc.keep_soft_rounding;
  Generator gen(rc.seed);
  r.report = run_pipeline(*r.model, d.calibration, options, gen, false, [&](const RunEvent& e) {
    if (rc.eval_rtn && e.kind == RunEvent::Kind::PhaseFinished && e.phase == RunPhase::Init)
      r.rtn = top1(e.model->net(), d);
  });
  r.quantized = top1(*r.net, d);
  MESSAGE(std::string(fixture + " " + method_name(rc.method) + " W" + std::to_string(rc.bits) +
                      "A" + std::to_string(rc.bits) + (rc.mixed_precision ? " mixed" : "") +
                      ": fp32 " + std::to_string(r.fp32) +
                      (rc.eval_rtn ? " rtn " + std::to_string(r.rtn) : std::string()) +
                      " quantized " + std::to_string(r.quantized)));
  return r;
}

// Packs are contiguous, in network order, and cover exactly the packable units.
void check_packs(const Net& net, const std::vector<Pack>& packs) {
  const std::vector<int64_t> packable = packable_units(net);
  REQUIRE(!packs.empty());
  CHECK(packs.front().first == packable.front());
  CHECK(packs.back().last == packable.back() + 1);
  for (size_t i = 0; i < packs.size(); ++i) {
    CHECK(packs[i].first < packs[i].last);
    if (i > 0) CHECK(packs[i].first == packs[i - 1].last);
  }
}

// Saves the trained model, checks its codes, reloads it and compares logits.
void check_save_load(const std::string& fixture, Run& r) {
  TempDir dir;
  const std::string path = (dir.path / "model.safetensors").string();
  const nlohmann::json config = fixture_config(fixture);
  save_quantized_model(path, *r.model, {{"model_config", config}, {"note", "test"}}, false);

  const TensorMap stored = load_safetensors(path);
  for (const QuantLayer& layer : r.model->layers()) {
    if (!layer.hook->weight_quantizer) {
      CHECK(stored.count(layer.name + ".operand0_scale") == 1);
      CHECK(stored.count(layer.name + ".operand1_zero_point") == 1);
      continue;
    }
    CHECK_MESSAGE(stored.count(layer.name + ".weight") == 0, "float weight of " << layer.name);
    const Tensor& codes = stored.at(layer.name + ".weight_codes");
    const int64_t qmax = (int64_t{1} << layer.hook->weight_bits) - 1;
    const std::vector<int64_t> values = codes.to_int64_vector();
    const auto [low, high] = std::minmax_element(values.begin(), values.end());
    CHECK_MESSAGE(*low >= 0, layer.name);
    CHECK_MESSAGE(*high <= qmax, layer.name);
    CHECK_MESSAGE(*low < *high, layer.name);  // not a constant tensor
  }

  const Data& d = fixture_data(*r.net);
  const Tensor images = slice_rows(d.val_images, 0, 40);
  LoadedQuantModel loaded = load_quantized_model(path);
  CHECK_FALSE(loaded.has_float_weights);
  CHECK(loaded.metadata.at("note") == "test");
  CHECK(loaded.metadata.at("model_name") == r.net->model_name());
  CHECK(logits_of(*loaded.net, images).to_vector() == logits_of(*r.net, images).to_vector());
  CHECK(top1(*loaded.net, d) == r.quantized);
  for (size_t i = 0; i < r.model->layers().size(); ++i)
    CHECK(loaded.model->layers()[i].hook->weight_bits == r.model->layers()[i].hook->weight_bits);
}

}  // namespace

TEST_CASE("pack W4A4: rtn close to FP32, contiguous Hessian packs, sane top-1, exact reload") {
  for (const char* fixture : {"resnet18_w16", "deit_t32", "swin_t32"}) {
    INFO(std::string(fixture));
    RunConfig rc;
    rc.eval_rtn = true;
    Run r = run(fixture, rc);
    CHECK(r.rtn >= r.fp32 - 5.0);  // the initialized model, before reconstruction
    const std::vector<int64_t> packable = packable_units(*r.net);
    REQUIRE(r.report.scores.size() == packable.size());
    for (size_t i = 0; i < packable.size(); ++i) {
      CHECK(r.report.scores[i].unit == packable[i]);
      CHECK(std::isfinite(r.report.scores[i].hessian));
      CHECK(std::isfinite(r.report.scores[i].omega));
      CHECK(r.report.scores[i].kl >= 0.0);
    }
    check_packs(*r.net, r.report.packs);
    // Before-units, packs, after-units: one reconstruction each.
    int64_t boundary = 0;
    for (const Unit& u : r.net->units())
      boundary += u.kind == UnitKind::Before || u.kind == UnitKind::After;
    CHECK(r.report.reconstruction.size() == r.report.packs.size() + static_cast<size_t>(boundary));
    for (const ReconResult& rec : r.report.reconstruction) CHECK(std::isfinite(rec.final_loss));
    CHECK(r.quantized >= r.fp32 - 5.0);
    CHECK(r.quantized >= r.rtn - 3.0);
    check_save_load(fixture, r);
  }
}

TEST_CASE("every baseline method runs with its own grouping, rtn is the initialized model") {
  const std::string fixture = "resnet18_w16";
  const auto net = load_fixture(fixture);
  size_t conv_linear = 0;
  for (const auto& [name, layer] : net->quantizable_layers())
    conv_linear += layer->kind() != LayerKind::MatMul;
  for (Method method : {Method::QDrop, Method::Brecq, Method::AdaRound}) {
    INFO(std::string(method_name(method)));
    RunConfig rc;
    rc.method = method;
    rc.iterations = 10;
    Run r = run(fixture, rc);
    CHECK(r.report.packs.empty());  // no scoring without pack or mixed precision
    if (method == Method::AdaRound)
      CHECK(r.report.reconstruction.size() == conv_linear);
    else
      CHECK(r.report.reconstruction.size() == static_cast<size_t>(r.net->num_units()));
    CHECK(r.quantized >= r.fp32 - 5.0);
  }
  RunConfig rc;
  rc.method = Method::Rtn;
  rc.iterations = 0;  // rtn never reconstructs
  rc.eval_rtn = true;
  Run rtn = run(fixture, rc);
  CHECK(rtn.report.reconstruction.empty());
  CHECK(rtn.quantized == rtn.rtn);  // its final model is the initialized one
  CHECK(rtn.quantized >= rtn.fp32 - 5.0);
}

TEST_CASE("mixed precision: packs at mid or high bits, boundary at high, within budget") {
  const std::map<int, std::pair<int, int>> choices = {{3, {3, 4}}, {4, {4, 6}}};
  for (const auto& choice : choices) {
    const int bits = choice.first, mid = choice.second.first, high = choice.second.second;
    INFO("W" << bits << "A" << bits);
    RunConfig rc;
    rc.bits = bits;
    rc.mixed_precision = true;
    rc.iterations = 10;
    Run r = run("resnet18_w16", rc);
    REQUIRE(r.report.mixed_precision);
    check_packs(*r.net, r.report.packs);
    CHECK(r.report.plan.mid == mid);
    CHECK(r.report.plan.high == high);
    CHECK(r.report.plan.boundary_bits == high);
    std::set<int> pack_bits;
    for (const Pack& p : r.report.packs) {
      pack_bits.insert(p.bits);
      for (int64_t u = p.first; u < p.last; ++u)
        for (size_t i : r.model->unit_layers(u)) {
          CHECK(r.model->layers()[i].hook->weight_bits == p.bits);
          CHECK(r.model->layers()[i].hook->activation_bits == p.bits);
        }
    }
    for (int b : pack_bits) CHECK((b == mid || b == high));
    for (const Unit& u : r.net->units()) {
      if (u.kind != UnitKind::Before && u.kind != UnitKind::After) continue;
      for (const std::string& name : u.layers)
        for (const QuantLayer& l : r.model->layers())
          if (l.name == name) CHECK(l.hook->weight_bits == high);
    }
    CHECK(r.report.plan.used <= r.report.plan.budget);
    CHECK(r.report.plan.average_bits > mid);
    CHECK(r.report.plan.average_bits <= (mid + high) / 2.0 + 1e-9);
    // Quantizers were re-initialized at the new widths: the model still works.
    CHECK(r.quantized >= r.fp32 - 15.0);
  }
}

TEST_CASE("first and last layers pinned to 8 bits save 8-bit codes and reload exactly") {
  RunConfig rc;
  rc.method = Method::Brecq;
  rc.bits = 3;
  rc.first_last_8bit = true;
  rc.iterations = 10;
  Run r = run("resnet18_w16", rc);
  CHECK(r.model->layers().front().hook->weight_bits == 8);
  CHECK(r.model->layers().back().hook->activation_bits == 8);
  CHECK(r.model->layers()[1].hook->weight_bits == 3);
  check_save_load("resnet18_w16", r);
}

TEST_CASE("an initialized model saved with float weights resumes to the same result") {
  const std::string fixture = "resnet18_w16";
  TempDir dir;
  const std::string path = (dir.path / "inited.safetensors").string();
  RunConfig rc;
  rc.iterations = 10;
  rc.method = Method::Brecq;
  const Data& d = fixture_data(*load_fixture(fixture));

  // Straight through, saving the initialized model on the way.
  auto net = load_fixture(fixture);
  QuantSettings settings;
  settings.weight_bits = settings.activation_bits = 4;
  settings.weight_channel_wise = true;
  QuantModel model(net, settings, false);
  PipelineOptions options;
  options.method = rc.method;
  options.recon.iterations = rc.iterations;
  Generator gen(kSeed);
  run_pipeline(model, d.calibration, options, gen, false, [&](const RunEvent& e) {
    if (e.kind == RunEvent::Kind::PhaseFinished && e.phase == RunPhase::Init)
      save_quantized_model(path, *e.model, {{"model_config", fixture_config(fixture)}}, true);
  });

  LoadedQuantModel loaded = load_quantized_model(path);
  CHECK(loaded.has_float_weights);
  const TensorMap stored = load_safetensors(path);
  CHECK(stored.count("conv1.weight") == 1);
  CHECK(stored.count("conv1.weight_codes") == 1);
  Generator resumed_gen(kSeed);
  run_pipeline(*loaded.model, d.calibration, options, resumed_gen, true, nullptr);
  const Tensor images = slice_rows(d.val_images, 0, 40);
  CHECK(logits_of(*loaded.net, images).to_vector() == logits_of(*net, images).to_vector());

  // A trained (hard-rounded) model cannot be saved with float weights, and a
  // file that is no quantized model is refused.
  CHECK_THROWS_WITH_AS(
      save_quantized_model(path, model, {{"model_config", nlohmann::json::object()}}, true),
      doctest::Contains("hard"), std::runtime_error);
  CHECK_THROWS_WITH_AS(save_quantized_model(path, model, nlohmann::json::object(), false),
                       doctest::Contains("model_config"), std::runtime_error);
  const std::string plain = (kFixtures / "models" / fixture / "model.safetensors").string();
  CHECK_THROWS_WITH_AS(load_quantized_model(plain),
                       doctest::Contains("not a packptq quantized model"), std::runtime_error);
}

TEST_CASE("a tampered quantized model is refused with the file and the problem") {
  const std::string fixture = "resnet18_w16";
  RunConfig rc;
  rc.method = Method::Rtn;
  Run r = run(fixture, rc);
  TempDir dir;
  const std::string saved = (dir.path / "model.safetensors").string();
  save_quantized_model(saved, *r.model, {{"model_config", fixture_config(fixture)}}, false);
  const TensorMap tensors = load_safetensors(saved);
  const std::map<std::string, std::string> metadata = load_safetensors_metadata(saved);
  std::set<std::string> codes;
  for (const auto& [name, t] : tensors)
    if (name.size() > 6 && name.compare(name.size() - 6, 6, "_codes") == 0) codes.insert(name);

  // Writes the saved model with one change and checks how loading it fails.
  using Change = std::function<void(TensorMap&, nlohmann::json&)>;
  const std::string path = (dir.path / "tampered.safetensors").string();
  auto refused = [&](const Change& change) -> std::string {
    TensorMap t = tensors;
    nlohmann::json m = nlohmann::json::parse(metadata.at("packptq"));
    change(t, m);
    std::map<std::string, std::string> meta = metadata;
    meta["packptq"] = m.dump();
    save_safetensors(path, t, meta, codes);
    try {
      load_quantized_model(path);
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      CHECK_MESSAGE(message.find(path) != std::string::npos, message);
      return message;
    }
    return std::string("loaded");
  };
  auto set_first = [](TensorMap& t, const std::string& name, float value) {
    std::vector<float> v = t.at(name).to_vector();
    v[0] = value;
    t[name] = Tensor::from_vector(v, t.at(name).shape());
  };
  const std::vector<std::pair<std::string, Change>> cases = {
      {"fc.input_scale holds 0.000000: scales must be finite and non-zero",
       [&](TensorMap& t, nlohmann::json&) { set_first(t, "fc.input_scale", 0.0f); }},
      {"conv1.weight_scale holds nan: scales must be finite and non-zero",
       [&](TensorMap& t, nlohmann::json&) { set_first(t, "conv1.weight_scale", NAN); }},
      {"fc.input_scale holds inf",
       [&](TensorMap& t, nlohmann::json&) { set_first(t, "fc.input_scale", INFINITY); }},
      {"fc.input_zero_point holds 2.500000: zero points are integers",
       [&](TensorMap& t, nlohmann::json&) { set_first(t, "fc.input_zero_point", 2.5f); }},
      {"layer layer1.0.conv1 is a linear layer in the file but a conv layer",
       [](TensorMap&, nlohmann::json& m) { m["quant"]["layers"][1]["kind"] = "linear"; }},
      {"layer layer1.0.conv1: rounding 'soft'",
       [](TensorMap&, nlohmann::json& m) { m["quant"]["layers"][1]["rounding"] = "soft"; }},
      {"eval_batch_size 0 is not a positive integer",
       [](TensorMap&, nlohmann::json& m) { m["eval_batch_size"] = 0; }},
      {"layer1.0.conv1.weight_codes holds",
       [](TensorMap&, nlohmann::json& m) { m["quant"]["layers"][1]["weight_bits"] = 2; }},
  };
  for (const auto& item : cases) {
    const auto& expected = item.first;
    const std::string message = refused(item.second);
    CHECK_MESSAGE(message.find(expected) != std::string::npos,
                  message << " (expected: " << expected << ")");
  }
  // Unchanged, it loads.
  CHECK(refused([](TensorMap&, nlohmann::json&) {}) == "loaded");

  // A model with a NaN scale (a diverged reconstruction) is not saved either.
  const std::string diverged = (dir.path / "diverged.safetensors").string();
  r.model->layers().back().hook->operand_quantizers.at(0)->scale = Tensor::from_vector({NAN}, {1});
  CHECK_THROWS_WITH_AS(
      save_quantized_model(diverged, *r.model, {{"model_config", fixture_config(fixture)}}, false),
      doctest::Contains("fc.input_scale holds nan"), std::runtime_error);
  CHECK_FALSE(fs::exists(diverged));
}

TEST_CASE("same seed, same result, another seed other reconstruction batches") {
  RunConfig rc;
  rc.method = Method::Brecq;  // scoring is the same for any seed; the CLI test covers it
  rc.iterations = 10;
  Run a = run("resnet18_w16", rc);
  Run b = run("resnet18_w16", rc);
  rc.seed = kSeed + 1;
  Run c = run("resnet18_w16", rc);
  REQUIRE(a.report.reconstruction.size() == b.report.reconstruction.size());
  bool any_differs = false;
  for (size_t i = 0; i < a.report.reconstruction.size(); ++i) {
    CHECK(a.report.reconstruction[i].final_loss == b.report.reconstruction[i].final_loss);
    any_differs = any_differs ||
                  a.report.reconstruction[i].final_loss != c.report.reconstruction[i].final_loss;
  }
  CHECK(a.quantized == b.quantized);
  const Tensor images = slice_rows(fixture_data(*a.net).val_images, 0, 40);
  CHECK(logits_of(*a.net, images).to_vector() == logits_of(*b.net, images).to_vector());
  CHECK(any_differs);  // other random batches in reconstruction
}

TEST_CASE("keep_soft_rounding: later units see soft rounding, every unit ends hard") {
  // Block-wise runs with and without the option: the first target (conv1,
  // the same inputs and random batches in both) trains alike; the targets
  // after it are captured through conv1's soft rounding and train on other
  // inputs. At the end every trained weight quantizer rounds hard, so the
  // model saves as integer codes and reloads to the same logits.
  RunConfig rc;
  rc.method = Method::Brecq;
  rc.iterations = 10;
  Run hard = run("resnet18_w16", rc);
  rc.keep_soft_rounding = true;
  Run soft = run("resnet18_w16", rc);
  const auto& a = hard.report.reconstruction;
  const auto& b = soft.report.reconstruction;
  REQUIRE(a.size() == b.size());
  REQUIRE(a.size() > 2);
  CHECK(a[0].final_loss == b[0].final_loss);
  for (size_t i = 1; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(a[i].final_loss != b[i].final_loss);
  }
  size_t trained = 0;
  for (const QuantLayer& ql : soft.model->layers()) {
    const WeightQuantizer* wq = ql.hook->weight_quantizer.get();
    if (!wq) continue;
    INFO(ql.name);
    CHECK(wq->rounding == Rounding::Hard);
    trained += wq->alpha.defined();
  }
  CHECK(trained > 0);
  CHECK(soft.quantized >= soft.fp32 - 5.0);
  check_save_load("resnet18_w16", soft);
}

TEST_CASE("safetensors: int64 tensors named as U8 are stored one byte each and read back") {
  TempDir dir;
  const std::string path = (dir.path / "codes.safetensors").string();
  const TensorMap tensors = {{"codes", Tensor::from_int64({0, 7, 255, 128, 1, 2}, {2, 3})},
                             {"index", Tensor::from_int64({-3, 300}, {2})},
                             {"scale", Tensor::from_vector({0.5f}, {1})}};
  save_safetensors(path, tensors, {}, {"codes"});
  // 8-byte length, header, then 6 + 16 + 4 bytes of data.
  std::ifstream in(path, std::ios::binary);
  uint64_t header_bytes = 0;
  in.read(reinterpret_cast<char*>(&header_bytes), 8);
  std::string header(header_bytes, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_bytes));
  CHECK(nlohmann::json::parse(header)["codes"]["dtype"] == "U8");
  CHECK(fs::file_size(path) == 8 + header_bytes + 6 + 16 + 4);
  const TensorMap loaded = load_safetensors(path);
  CHECK(loaded.at("codes").dtype() == DType::I64);
  CHECK(loaded.at("codes").shape() == Shape{2, 3});
  CHECK(loaded.at("codes").to_int64_vector() == std::vector<int64_t>{0, 7, 255, 128, 1, 2});
  CHECK(loaded.at("index").to_int64_vector() == std::vector<int64_t>{-3, 300});

  CHECK_THROWS_WITH_AS(save_safetensors(path, tensors, {}, {"index"}),
                       doctest::Contains("outside [0, 255]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, tensors, {}, {"scale"}),
                       doctest::Contains("not int64"), std::runtime_error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, tensors, {}, {"missing"}),
                       doctest::Contains("no such tensor"), std::runtime_error);
  CHECK(load_safetensors(path).at("codes").to_int64_vector() ==
        std::vector<int64_t>{0, 7, 255, 128, 1, 2});  // failed saves left the file alone
}

TEST_CASE("targets fed the carried inputs equal targets captured from the images") {
  // The layers, and separately the whole units, of two consecutive units of
  // a CNN and of a ViT reconstructed in order, once handing the inputs on
  // and once capturing each target from the images: the same trained model,
  // bit for bit.
  for (const char* fixture : {"resnet18_w16", "deit_t32"}) {
    for (bool layer_wise : {false, true}) {
      INFO(std::string(fixture) << (layer_wise ? " layer-wise" : " unit-wise"));
      std::vector<Tensor> logits;
      for (bool carry : {true, false}) {
        InitializedModel m = initialized_w4(fixture, true);
        QuantModel& model = *m.model;
        std::vector<ReconTarget> targets;
        for (int64_t u : {m.packable[0], m.packable[1]}) {
          ReconTarget target;
          target.name = m.net->units()[u].name;
          target.first_unit = u;
          target.last_unit = u + 1;
          target.mix_inputs = true;
          if (!layer_wise) {
            targets.push_back(target);
            continue;
          }
          for (size_t i : model.unit_layers(u)) {
            if (model.layers()[i].layer->kind() == LayerKind::MatMul) continue;
            target.name = model.layers()[i].name;
            target.layer = static_cast<int64_t>(i);
            target.mix_inputs = false;
            targets.push_back(target);
          }
        }
        ReconOptions options;
        options.iterations = 4;
        Generator gen(kSeed);
        UnitInputs carried;
        for (const ReconTarget& target : targets) {
          reconstruct(model, target, m.calibration, options, gen, carry ? &carried : nullptr);
          if (carry) CHECK(carried.unit == target.first_unit);
        }
        model.set_quant(true, true);
        logits.push_back(logits_of(*m.net, slice_rows(fixture_data(*m.net).val_images, 0, 20)));
      }
      CHECK(logits[0].to_vector() == logits[1].to_vector());
    }
  }
}

TEST_CASE("batch shards on two threads give the single-thread scores and reconstruction") {
  // Hessian scores and a two-unit pack (CNN, and ViT with its attention
  // operand quantizers) with one and with two threads: the shards' losses
  // and gradients must add up to those of the whole batch. Adam keeps the
  // steps of the few weights whose gradient is nearly 0 sign-sensitive, so
  // alphas are compared by the share that moved apart.
  const int previous_threads = num_threads();
  for (const char* fixture : {"resnet18_w16", "deit_t32"}) {
    INFO(std::string(fixture));
    struct Outcome {
      std::vector<UnitScore> scores;
      double loss = 0;
      std::vector<float> alphas, scales;
    };
    std::vector<Outcome> outcomes;
    for (int threads : {1, 2}) {
      // Initialized on one thread both times: activation ranges follow the
      // quantized layers before them, where a last-bit difference of the
      // threads' sums can move one value across a rounding boundary.
      set_num_threads(1);
      InitializedModel m = initialized_w4(fixture, false);
      set_num_threads(threads);
      QuantModel& model = *m.model;
      const Tensor& calibration = m.calibration;
      const std::vector<int64_t>& packable = m.packable;
      Outcome out;
      out.scores = hessian_scores(model, calibration, 16, {packable[0], packable[1]});
      ReconOptions options;
      options.iterations = 6;  // the rounding loss joins after the first step
      ReconTarget target;
      target.name = "pack";
      target.first_unit = packable[0];
      target.last_unit = packable[1] + 1;
      target.mix_inputs = true;
      Generator gen(kSeed);
      out.loss = reconstruct(model, target, calibration, options, gen).final_loss;
      // The float parameters stay out of the shards' backward passes (their
      // gradients would be accumulated by two threads at once), and their
      // flags come back.
      for (const Tensor& p : m.net->parameters()) {
        CHECK(p.requires_grad());
        CHECK_FALSE(p.grad().defined());
      }
      for (const QuantLayer& ql : model.layers()) {
        const QuantHook& hook = *ql.hook;
        if (hook.weight_quantizer && hook.weight_quantizer->alpha.defined())
          for (float a : hook.weight_quantizer->alpha.to_vector()) out.alphas.push_back(a);
        for (const auto& q : hook.operand_quantizers)
          if (q && q->scale.defined())
            for (float s : q->scale.to_vector()) out.scales.push_back(s);
      }
      outcomes.push_back(out);
    }
    set_num_threads(previous_threads);
    const Outcome &one = outcomes[0], &two = outcomes[1];
    REQUIRE(one.scores.size() == two.scores.size());
    for (size_t i = 0; i < one.scores.size(); ++i) {
      CHECK(two.scores[i].kl == doctest::Approx(one.scores[i].kl).epsilon(1e-4));
      CHECK(two.scores[i].hessian == doctest::Approx(one.scores[i].hessian).epsilon(1e-4));
      CHECK(two.scores[i].omega == doctest::Approx(one.scores[i].omega).epsilon(1e-4));
    }
    CHECK(two.loss == doctest::Approx(one.loss).epsilon(1e-3));
    REQUIRE(one.alphas.size() == two.alphas.size());
    REQUIRE(!one.alphas.empty());
    size_t apart = 0;
    for (size_t i = 0; i < one.alphas.size(); ++i)
      apart += std::fabs(one.alphas[i] - two.alphas[i]) > 1e-4f;
    CHECK(static_cast<double>(apart) < 0.01 * static_cast<double>(one.alphas.size()));
    REQUIRE(one.scales.size() == two.scales.size());
    for (size_t i = 0; i < one.scales.size(); ++i)
      CHECK(two.scales[i] == doctest::Approx(one.scales[i]).epsilon(1e-4));
  }
}
