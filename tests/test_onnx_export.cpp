// ONNX export (quant/onnx): the exports of every fixture run in a real
// runtime, ONNX Runtime from the npm registry (onnxruntime-node, installed
// into the build folder by tests/onnx/install_onnxruntime.sh, a CTest
// fixture), and compute what packptq computes: FP32 logits within 1e-4 of
// packptq's, quantized models with the same top-1 on fashion32/val and the
// same argmax on nearly every image. A changed zero point or weight code in
// the file makes the strict comparison fail.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "nets/init.h"
#include "nets/load_model.h"
#include "quant/evaluate_run.h"
#include "quant/model_io.h"
#include "quant/onnx/export_run.h"
#include "quant/run.h"
#include "tests/fixture_runs.h"
#include "tests/testing.h"
#include "tools/cli/commands.h"
#include "tools/data/dataset.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kCnnFixtures = {"resnet18_w16", "resnet50_w16", "mobilenetv2_w050",
                                               "regnetx_200m", "mnasnet_s050"};
const std::vector<std::string> kTransformerFixtures = {"vit_s32", "deit_t32", "swin_t32"};


// Logits of `images` as ONNX Runtime computes them with the model at `onnx`.
Tensor runtime_logits(const std::string& onnx, const Tensor& images, const TempDir& dir) {
  const std::string in = dir.file("images.safetensors"), out = dir.file("logits.safetensors");
  const std::string log = dir.file("onnxruntime.log");
  fs::remove(out);
  save_safetensors(in, {{"images", images}});
  const std::string command = "node '" + std::string(PACKPTQ_ONNXRUNTIME_DIR) +
                              "/run_onnx.mjs' '" + onnx + "' '" + in + "' '" + out + "' > '" +
                              log + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream log_file(log);
  const std::string output((std::istreambuf_iterator<char>(log_file)), {});
  REQUIRE_MESSAGE(status == 0, "ONNX Runtime failed on " << onnx << ":\n" << output);
  return load_safetensors(out).at("logits");
}

// The largest difference of two logit vectors and their largest magnitude.
std::pair<double, double> largest_difference(const Tensor& ours, const Tensor& runtime) {
  const std::vector<float> a = ours.to_vector(), b = runtime.to_vector();
  REQUIRE(a.size() == b.size());
  double largest = 0, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    largest = std::max(largest, std::abs(static_cast<double>(a[i])));
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return {diff, largest};
}

// How far the runtime's logits are from packptq's on the same images.
struct Agreement {
  int64_t images = 0;
  double packptq_top1 = 0, runtime_top1 = 0;
  double argmax_equal = 0;  // percent of images
  double max_logit_diff = 0;
  // Images with a logit off by more than 1e-5 of their largest one: without
  // a flipped code the two agree to about 1e-6, with one a logit moves by
  // up to a quantization step.
  int64_t images_differ = 0;
  // The runtime computes the model: the same top-1 to 0.1 and the same
  // argmax on 99.5% of the images. Single codes flip where a value lies
  // within a last-bit difference of a rounding boundary, so some images'
  // logits differ.
  bool holds() const {
    return std::abs(packptq_top1 - runtime_top1) <= 0.1 + 1e-9 && argmax_equal >= 99.5;
  }
  // Also no flipped code on 99% of the images: strict enough to see one
  // wrong weight code, which holds for models with few rounding ties.
  bool holds_exactly() const { return holds() && images_differ <= images / 100; }
};

int64_t argmax_row(const std::vector<float>& v, int64_t row, int64_t k) {
  const float* r = v.data() + row * k;
  return std::max_element(r, r + k) - r;
}

Agreement compare(const Tensor& packptq, const Tensor& runtime, const std::vector<int64_t>& labels) {
  REQUIRE(packptq.shape() == runtime.shape());
  const int64_t n = packptq.size(0), k = packptq.size(1);
  const std::vector<float> a = packptq.to_vector(), b = runtime.to_vector();
  Agreement result;
  result.images = n;
  int64_t right_a = 0, right_b = 0, equal = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pa = argmax_row(a, i, k), pb = argmax_row(b, i, k);
    right_a += pa == labels[i];
    right_b += pb == labels[i];
    equal += pa == pb;
    double largest = 0, diff = 0;
    for (int64_t j = 0; j < k; ++j) {
      largest = std::max(largest, std::abs(static_cast<double>(a[i * k + j])));
      diff = std::max(diff, std::abs(static_cast<double>(a[i * k + j]) - b[i * k + j]));
    }
    result.max_logit_diff = std::max(result.max_logit_diff, diff);
    result.images_differ += diff > 1e-5 * std::max(1.0, largest);
  }
  result.packptq_top1 = 100.0 * right_a / n;
  result.runtime_top1 = 100.0 * right_b / n;
  result.argmax_equal = 100.0 * equal / n;
  return result;
}

// The validation images of `dataset` with the net's preprocessing, and labels.
struct ValidationSet {
  Tensor images;
  std::vector<int64_t> labels;
};

ValidationSet validation_set(const Net& net, const std::string& dataset) {
  const data::ImageFolder folder = data::scan_image_folder(dataset, "val");
  data::Batch batch = data::load_batch(folder.samples, 0, folder.samples.size(),
                                       data::preprocess_config(net.preprocess()));
  ValidationSet set{batch.images, {}};
  for (const data::Sample& s : folder.samples) set.labels.push_back(s.label);
  return set;
}

// packptq's logits of `images`, `batch` at a time (as its evaluation runs).
Tensor packptq_logits(Net& net, const Tensor& images, int64_t batch) {
  NoGradGuard no_grad;
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch) {
    const int64_t count = std::min(batch, images.size(0) - start);
    parts.push_back(net.forward(slice_rows(images, start, count)));
  }
  return concat(parts, 0);
}

QuantizeConfig short_run(const std::string& fixture, int bits) {
  QuantizeConfig config = testing::fixture_run_config(fixture, bits, 50, "");
  config.batch_size = 32;
  return config;
}

// Quantizes (short run), exports the trained model file and compares the
// runtime with packptq on fashion32/val; prints one row of the table.
Agreement check_quantized_export(const QuantizeConfig& config, const std::string& label) {
  TempDir dir;
  QuantizeConfig run = config;
  run.output_dir = dir.path.string();
  const QuantizeResult result = quantize(run);
  const std::string onnx = dir.file("model.onnx");
  const OnnxExportResult exported = export_quantized_file(result.trained_model_path, onnx);

  EvaluateConfig eval;
  eval.quantized = result.trained_model_path;
  eval.dataset_path = run.dataset_path;
  eval.threads = 2;
  const double eval_top1 = evaluate_model(eval).accuracy.top1;

  LoadedQuantModel loaded = load_quantized_model(result.trained_model_path);
  const ValidationSet val = validation_set(*loaded.net, run.dataset_path);
  const Tensor ours = packptq_logits(*loaded.net, val.images, run.batch_size);
  const Agreement agreement = compare(ours, runtime_logits(onnx, val.images, dir), val.labels);
  MESSAGE(label << ": packptq eval top-1 " << eval_top1 << ", ONNX Runtime top-1 "
                << agreement.runtime_top1 << ", argmax equal " << agreement.argmax_equal
                << "%, largest logit difference " << agreement.max_logit_diff
                << ", images with a flipped code " << agreement.images_differ << "/"
                << agreement.images << ", export "
                << exported.seconds << " s, " << exported.bytes << " bytes ("
                << fs::file_size(result.trained_model_path) << " as safetensors)");
  CHECK(agreement.packptq_top1 == doctest::Approx(eval_top1).epsilon(1e-9));
  CHECK_MESSAGE(agreement.holds(), label << " disagrees");
  return agreement;
}

void check_fixtures_at_3_and_4_bits(const std::vector<std::string>& fixtures) {
  for (const std::string& fixture : fixtures)
    for (int bits : {4, 3}) {
      CAPTURE(fixture);
      CAPTURE(bits);
      check_quantized_export(short_run(fixture, bits),
                             fixture + " W" + std::to_string(bits) + "A" + std::to_string(bits));
    }
}

onnx::ModelProto read_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto model;
  REQUIRE_MESSAGE(model.ParseFromIstream(&in), "cannot parse " << path);
  return model;
}

void write_model(const onnx::ModelProto& model, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(model.SerializeToOstream(&out));
}

onnx::TensorProto* find_initializer(onnx::ModelProto& model, const std::string& name) {
  for (onnx::TensorProto& t : *model.mutable_graph()->mutable_initializer())
    if (t.name() == name) return &t;
  FAIL("no initializer " << name);
  return nullptr;
}

std::string metadata(const onnx::ModelProto& model, const std::string& key) {
  for (const auto& entry : model.metadata_props())
    if (entry.key() == key) return entry.value();
  return "";
}

}  // namespace

TEST_CASE("FP32 exports of the 8 fixtures give packptq's logits of the golden input in ONNX "
          "Runtime") {
  std::vector<std::string> fixtures = kCnnFixtures;
  fixtures.insert(fixtures.end(), kTransformerFixtures.begin(), kTransformerFixtures.end());
  for (const std::string& fixture : fixtures) {
    CAPTURE(fixture);
    TempDir dir;
    ExportConfig config;
    config.model_name = testing::fixture_model_name(fixture);
    config.weights = (testing::fixture_model_dir(fixture) / "model.safetensors").string();
    config.model_config = (testing::fixture_model_dir(fixture) / "config.json").string();
    config.onnx = dir.file("model.onnx");
    const OnnxExportResult exported = export_model(config);
    CHECK(exported.quantized_weights == 0);

    std::shared_ptr<Net> net = load_model(config.model_name, config.model_config, config.weights);
    const Tensor input = load_safetensors((testing::fixture_model_dir(fixture) / "golden.safetensors").string())
                             .at("input");
    Tensor ours;
    {
      NoGradGuard no_grad;
      ours = net->forward(input);
    }
    const auto [diff, largest] =
        largest_difference(ours, runtime_logits(config.onnx, input, dir));
    MESSAGE(fixture << " FP32: largest logit difference " << diff << " (" << diff / largest
                    << " of the largest logit), " << exported.nodes << " nodes, "
                    << exported.bytes << " bytes, " << exported.seconds << " s");
    CHECK(diff <= 1e-4 * largest);
  }
}

TEST_CASE("every one of the 14 architectures in its standard configuration exports and gives "
          "packptq's logits in ONNX Runtime") {
  Generator gen(14);
  for (const std::string& name : model_names()) {
    CAPTURE(name);
    TempDir dir;
    std::shared_ptr<Net> net = create_net(name);
    init_random(*net, 14);
    net->eval();
    const int64_t size = net->preprocess().input_size;
    const Tensor image = gen.uniform_tensor({1, 3, size, size}, -2.0f, 2.0f);
    Tensor ours;
    {
      NoGradGuard no_grad;
      ours = net->forward(image);
    }
    const OnnxExportResult exported =
        export_onnx(*net, dir.file("model.onnx"), nlohmann::json{{"model_name", name}});
    const auto [diff, largest] =
        largest_difference(ours, runtime_logits(exported.path, image, dir));
    MESSAGE(name << ": largest logit difference " << diff / largest << " of the largest, "
                 << exported.nodes << " nodes, " << exported.bytes / 1000000 << " MB, "
                 << exported.seconds << " s");
    CHECK(diff <= 1e-4 * largest);
  }
}

TEST_CASE("quantized exports of the CNN fixtures at W4A4 and W3A3 agree with packptq in ONNX "
          "Runtime") {
  check_fixtures_at_3_and_4_bits(kCnnFixtures);
}

TEST_CASE("quantized exports of the transformer fixtures at W4A4 and W3A3 agree with packptq in "
          "ONNX Runtime") {
  check_fixtures_at_3_and_4_bits(kTransformerFixtures);
}

TEST_CASE("mixed-precision and folded-BatchNorm exports agree with packptq in ONNX Runtime") {
  QuantizeConfig mixed = short_run("deit_t32", 4);
  mixed.enable_mixed_precision = true;
  check_quantized_export(mixed, "deit_t32 W4A4 mixed precision");
  QuantizeConfig folded = short_run("resnet18_w16", 4);
  folded.fold_bn = true;
  check_quantized_export(folded, "resnet18_w16 W4A4 --fold_bn");
}

TEST_CASE("a quantized export holds codes, QDQ pairs with the engine's ranges and its metadata, "
          "and a changed zero point or weight code makes the comparison fail") {
  TempDir dir;
  QuantizeConfig config = short_run("resnet18_w16", 3);
  config.output_dir = dir.path.string();
  config.first_last_8bit = true;
  // All of val, also in sanitizer runs: one code off flips about 1% of the
  // images, which a subset may not show.
  config.dataset_path = (testing::fixtures_dir() / "fashion32").string();
  const QuantizeResult result = quantize(config);
  const std::string onnx = dir.file("model.onnx");
  export_quantized_file(result.trained_model_path, onnx);
  onnx::ModelProto model = read_model(onnx);

  // The file says what it is.
  CHECK(metadata(model, "model_name") == "resnet18");
  CHECK(nlohmann::json::parse(metadata(model, "mean")).size() == 3);
  const nlohmann::json description = nlohmann::json::parse(metadata(model, "packptq"));
  CHECK(description.at("quant_top1").get<double>() == result.quantized.top1);
  CHECK(description.at("packs").size() == result.packs.size());

  // Weights as uint8 codes of the file; activations clipped to 3-bit codes
  // except around the 8-bit first and last layers.
  const TensorMap file = load_safetensors(result.trained_model_path);
  onnx::TensorProto* codes = find_initializer(model, "layer2.0.conv1.weight_quantized");
  CHECK(codes->data_type() == onnx::TensorProto::UINT8);
  const std::vector<int64_t> expected = file.at("layer2.0.conv1.weight_codes").to_int64_vector();
  REQUIRE(codes->raw_data().size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    REQUIRE(static_cast<uint8_t>(codes->raw_data()[i]) == expected[i]);
  int clips_to_7 = 0, quantize_nodes = 0;
  for (const onnx::NodeProto& node : model.graph().node()) {
    quantize_nodes += node.op_type() == "QuantizeLinear";
    if (node.op_type() == "Clip" && node.input_size() == 3) {
      for (const onnx::TensorProto& t : model.graph().initializer())
        if (t.name() == node.input(2) && t.data_type() == onnx::TensorProto::UINT8)
          clips_to_7 += static_cast<uint8_t>(t.raw_data()[0]) == 7;
    }
  }
  CHECK(quantize_nodes == 20);  // every conv and the fc, less the stem conv (the image)
  CHECK(clips_to_7 == 19);      // the fc's input is 8 bits

  // The unchanged export agrees; one zero point or one weight code off does not.
  LoadedQuantModel loaded = load_quantized_model(result.trained_model_path);
  const ValidationSet val = validation_set(*loaded.net, config.dataset_path);
  const Tensor ours = packptq_logits(*loaded.net, val.images, config.batch_size);
  CHECK(compare(ours, runtime_logits(onnx, val.images, dir), val.labels).holds_exactly());

  onnx::ModelProto changed = model;
  std::string& zero_point = *find_initializer(changed, "layer3.0.conv1.input_zero_point")
                                 ->mutable_raw_data();
  zero_point[0] = static_cast<char>(static_cast<uint8_t>(zero_point[0]) == 0 ? 1 : zero_point[0] - 1);
  write_model(changed, dir.file("zero_point.onnx"));
  const Agreement zero_point_off =
      compare(ours, runtime_logits(dir.file("zero_point.onnx"), val.images, dir), val.labels);
  MESSAGE("one activation zero point off by one: " << zero_point_off.images_differ << " of "
                                                   << zero_point_off.images << " images differ");
  CHECK_FALSE(zero_point_off.holds_exactly());

  changed = model;
  std::string& code = *find_initializer(changed, "layer3.0.conv1.weight_quantized")->mutable_raw_data();
  code[0] = static_cast<char>(static_cast<uint8_t>(code[0]) == 0 ? 1 : code[0] - 1);
  write_model(changed, dir.file("code.onnx"));
  const Agreement code_off =
      compare(ours, runtime_logits(dir.file("code.onnx"), val.images, dir), val.labels);
  MESSAGE("one weight code off by one: " << code_off.images_differ << " of " << code_off.images
                                         << " images differ");
  CHECK_FALSE(code_off.holds_exactly());
}

TEST_CASE("packptq export: bad input gives a message and an exit code, and no file") {
  TempDir dir;
  const std::string onnx = dir.file("out.onnx");
  CHECK(testing::run_command(cli::run_export, {"export", "--onnx", onnx}) == 2);
  CHECK(testing::run_command(cli::run_export, {"export", "--quantized", dir.file("missing.safetensors")}) == 2);
  CHECK(testing::run_command(cli::run_export, {"export", "--quantized", dir.file("missing.safetensors"),
                                               "--onnx", dir.file("no_folder/out.onnx")}) == 2);
  CHECK(testing::run_command(cli::run_export, {"export", "--quantized", dir.file("missing.safetensors"),
                                               "--onnx", onnx}) == 1);
  CHECK(testing::run_command(cli::run_export, {"export", "--quantized", "x.safetensors", "--model_name",
                                               "resnet18", "--onnx", onnx}) == 2);
  CHECK(dir.entries().empty());
  const std::string message = testing::error_message([&] {
    ExportConfig config;
    config.quantized = dir.file("missing.safetensors");
    config.onnx = onnx;
    export_model(config);
  });
  CHECK(message.find("missing.safetensors") != std::string::npos);
}
