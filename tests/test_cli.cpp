// packptq's command-line layer: model loading from the fixtures' config.json
// and both checkpoint formats, FP32 evaluation (accuracy equal to PyTorch's
// on fashion32/val, top-k rule), `packptq eval` end to end in-process,
// training scripts' checkpoints (the weights that fit, --ema), and bad input
// giving an exit code and no report file.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/parallel.h"
#include "engine/safetensors.h"
#include "tests/testing.h"
#include "tools/cli/commands.h"
#include "nets/load_model.h"
#include "tools/cli/flags.h"
#include "tools/data/evaluate.h"

using namespace pk;
using pk::testing::TempDir;
using namespace pk::cli;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = testing::fixtures_dir();
const fs::path kModels = kFixtures / "models";
const fs::path kFashion = kFixtures / "fashion32";

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return nlohmann::json::parse(in);
}

std::string model_name_of(const std::string& fixture) {
  return read_json(kModels / fixture / "config.json").at("model_name").get<std::string>();
}

std::string config_of(const std::string& fixture) {
  return (kModels / fixture / "config.json").string();
}

std::string weights_of(const std::string& fixture, const std::string& file = "model.pth") {
  return (kModels / fixture / file).string();
}

const std::vector<data::Sample>& val_samples() {
  static const data::ImageFolder val = data::scan_image_folder(kFashion.string(), "val");
  return val.samples;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  REQUIRE(out.good());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `packptq eval ARGS...` in-process and returns its exit code.
int run_eval_with(std::vector<std::string> args) {
  args.insert(args.begin(), "eval");
  return testing::run_command(run_eval, std::move(args));
}

void expect_same_tensors(const TensorMap& a, const TensorMap& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& entry : a) {
    const std::string& name = entry.first;
    const Tensor& tensor = entry.second;
    auto other = b.find(name);
    REQUIRE_MESSAGE(other != b.end(), name << " is missing");
    REQUIRE_MESSAGE(tensor.shape() == other->second.shape(), name);
    REQUIRE_MESSAGE(tensor.dtype() == other->second.dtype(), name);
    if (tensor.dtype() == DType::F32)
      CHECK_MESSAGE(tensor.to_vector() == other->second.to_vector(), name << " differs");
    else
      CHECK_MESSAGE(tensor.to_int64_vector() == other->second.to_int64_vector(),
                    name << " differs");
  }
}

// Both checkpoint formats load to the same tensors and the same logits; the
// .pth model's top-1 on the 1000 val images is PyTorch's (config.json
// fp32_top1_val, rounded to 0.1) within 0.3 points.
void check_fixture(const std::string& fixture) {
  INFO("fixture " << fixture);
  const nlohmann::json config = read_json(config_of(fixture));
  const std::string model_name = config.at("model_name").get<std::string>();
  std::shared_ptr<Net> from_pth = load_model(model_name, config_of(fixture), weights_of(fixture));
  std::shared_ptr<Net> from_safetensors =
      load_model(model_name, config_of(fixture), weights_of(fixture, "model.safetensors"));
  CHECK_FALSE(from_pth->training());
  const TensorMap state = from_pth->state_dict();
  CHECK(state.size() == config.at("num_state_dict_tensors").get<size_t>());
  expect_same_tensors(state, from_safetensors->state_dict());

  const data::PreprocessConfig preprocess = data::preprocess_config(from_pth->preprocess());
  CHECK(preprocess.input_size == config.at("input_size").get<int>());
  const std::vector<data::Sample>& samples = val_samples();
  REQUIRE(samples.size() == 1000);
  {
    NoGradGuard no_grad;
    const data::Batch batch = data::load_batch(samples, 0, 32, preprocess);
    CHECK(from_pth->forward(batch.images).to_vector() ==
          from_safetensors->forward(batch.images).to_vector());
  }

  const data::EvalResult result = data::evaluate(*from_pth, samples, preprocess, 64, "eval " + fixture);
  const double expected = config.at("fp32_top1_val").get<double>();
  MESSAGE(fixture << ": top-1 " << result.top1 << " (PyTorch " << expected << "), top-5 "
                  << result.top5 << ", " << result.images_per_second() << " images/s");
  CHECK(result.images == 1000);
  CHECK(std::fabs(result.top1 - expected) <= 0.3);
  CHECK(result.top5 >= result.top1);
  CHECK(result.top5 <= 100.0);
}

// Replays fixed logits, ignoring its input, to test evaluate()'s counting.
class ReplayNet : public Net {
 public:
  ReplayNet(std::vector<float> logits, int64_t classes)
      : logits_(std::move(logits)), classes_(classes) {
    add_unit("head", UnitKind::After);
  }
  Tensor run_unit(int64_t, const Tensor& input) override {
    const int64_t rows = input.size(0);
    std::vector<float> out(logits_.begin() + next_ * classes_,
                           logits_.begin() + (next_ + rows) * classes_);
    next_ += rows;
    return Tensor::from_vector(out, {rows, classes_});
  }
  Tensor glue(int64_t, const Tensor& output) override { return output; }

 private:
  std::vector<float> logits_;
  int64_t classes_;
  int64_t next_ = 0;
};

std::vector<data::Sample> samples_with_labels(const std::vector<int64_t>& labels) {
  std::vector<data::Sample> samples;
  for (int64_t label : labels) samples.push_back({val_samples().front().path, label});
  return samples;
}

}  // namespace

TEST_CASE("fixture resnet18_w16: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("resnet18_w16");
}
TEST_CASE("fixture resnet50_w16: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("resnet50_w16");
}
TEST_CASE("fixture mobilenetv2_w050: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("mobilenetv2_w050");
}
TEST_CASE("fixture regnetx_200m: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("regnetx_200m");
}
TEST_CASE("fixture mnasnet_s050: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("mnasnet_s050");
}
TEST_CASE("fixture deit_t32: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("deit_t32");
}
TEST_CASE("fixture vit_s32: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("vit_s32");
}
TEST_CASE("fixture swin_t32: load .pth and .safetensors, FP32 top-1 on fashion32/val") {
  check_fixture("swin_t32");
}

TEST_CASE("evaluate: top-k follows torch.topk's order (ties by index, NaN first), across batches") {
  const float nan = std::nanf("");
  // 6 classes; the label's rank is 0, 3, 0, 5 and 4.
  const std::vector<float> logits = {
      0,   0, 5, 0, 0, 0,   // label 2: the largest
      1,   1, 1, 1, 1, 1,   // label 3: ties rank classes 0-2 above it
      1,   1, 1, 1, 1, 1,   // label 0: first among equals
      nan, 0, 0, 0, 0, 0,   // label 5: NaN and classes 1-4 rank above it
      9,   8, 7, 6, 5, -1,  // label 4: fifth largest
  };
  ReplayNet net(logits, 6);
  const data::PreprocessConfig preprocess = data::preprocess_config(Preprocess{});
  // Batches of 2 leave a last batch of 1.
  const data::EvalResult result =
      data::evaluate(net, samples_with_labels({2, 3, 0, 5, 4}), preprocess, 2, "replay");
  CHECK(result.images == 5);
  CHECK(result.top1 == doctest::Approx(40.0));
  CHECK(result.top5 == doctest::Approx(80.0));

  // Fewer than 5 classes: every label is within the top 5.
  ReplayNet three_classes({0, 1, 2, 2, 1, 0}, 3);
  const data::EvalResult small =
      data::evaluate(three_classes, samples_with_labels({0, 0}), preprocess, 8, "replay");
  CHECK(small.top1 == doctest::Approx(50.0));
  CHECK(small.top5 == doctest::Approx(100.0));

  // A label the model has no logit for is an error, not a miss.
  ReplayNet too_few({0, 1, 2}, 3);
  CHECK_THROWS(data::evaluate(too_few, samples_with_labels({3}), preprocess, 8, "replay"));
}

TEST_CASE("packptq eval end to end: exit 0, report equal to the library's numbers") {
  TempDir temp;
  testing::link_image_subset(kFashion, temp.path / "data", "val", 10);
  const std::string fixture = "vit_s32";
  const fs::path report = temp.path / "report.json";
  const int rc = run_eval_with({"--model_name", model_name_of(fixture), "--model_config",
                                config_of(fixture), "--weights", weights_of(fixture),
                                "--dataset_path", (temp.path / "data").string(), "--batch_size",
                                "16", "--threads", "2", "--report_json", report.string()});
  REQUIRE(rc == 0);
  REQUIRE(fs::exists(report));
  const nlohmann::json json = read_json(report);
  for (const char* key : {"model_name", "weights", "dataset", "split", "images", "top1", "top5",
                          "images_per_second", "seconds"})
    CHECK_MESSAGE(json.contains(key), "report lacks " << key);
  CHECK(json.at("model_name") == model_name_of(fixture));
  CHECK(json.at("weights") == weights_of(fixture));
  CHECK(json.at("split") == "val");
  CHECK(json.at("images") == 100);
  CHECK(json.at("images_per_second").get<double>() > 0);
  // Nothing but the report: the temporary file was renamed.
  for (const auto& entry : fs::directory_iterator(temp.path))
    CHECK_MESSAGE((entry.path() == report || entry.path() == temp.path / "data"),
                  "unexpected file " << entry.path());

  std::shared_ptr<Net> net =
      load_model(model_name_of(fixture), config_of(fixture), weights_of(fixture));
  const data::ImageFolder folder = data::scan_image_folder((temp.path / "data").string(), "val");
  const data::EvalResult expected =
      data::evaluate(*net, folder.samples, data::preprocess_config(net->preprocess()), 16, "library");
  CHECK(json.at("top1").get<double>() == expected.top1);
  CHECK(json.at("top5").get<double>() == expected.top5);

  CHECK(run_eval_with({"--help"}) == 0);
}

TEST_CASE("load_model: errors name the file, the key or the model") {
  const std::string deit = "deit_t32", vit = "vit_s32";
  // DeiT configured as deit_t32 with vit_s32's weights: other widths and depth.
  const std::string mismatch =
      testing::error_message([&] { load_model(model_name_of(deit), config_of(deit), weights_of(vit)); });
  CHECK_MESSAGE(mismatch.find(weights_of(vit)) != std::string::npos, mismatch);
  CHECK_MESSAGE(
      mismatch.find("blocks.0.attn.proj.weight: file float32[64, 64] vs model float32[96, 96]") !=
          std::string::npos,
      mismatch);
  CHECK_MESSAGE(mismatch.find("missing from the file: blocks.4.") != std::string::npos, mismatch);
  CHECK_MESSAGE(mismatch.find('\n') == std::string::npos, mismatch);

  const std::string wrong_name = testing::error_message(
      [&] { load_model("resnet50", config_of("resnet18_w16"), weights_of("resnet18_w16")); });
  CHECK_MESSAGE(wrong_name.find("'resnet18'") != std::string::npos, wrong_name);
  CHECK_MESSAGE(wrong_name.find(config_of("resnet18_w16")) != std::string::npos, wrong_name);

  CHECK_THROWS_AS(load_model("resnet19", "", weights_of("resnet18_w16")), ConfigError);
  CHECK_THROWS_AS(load_model("resnet18", config_of("resnet18_w16"), ""), ConfigError);
  // The standard resnet18 is 64 wide with 1000 classes: the fixture does not fit.
  const std::string standard =
      testing::error_message([&] { load_model("resnet18", "", weights_of("resnet18_w16")); });
  CHECK_MESSAGE(standard.find("--model_config") != std::string::npos, standard);
}

// tests/data/training_checkpoints: a narrow resnet18 as training scripts
// save it (tests/data/make_training_checkpoints.py), zip and legacy.
const fs::path kTrainingCheckpoints =
    fs::path(PACKPTQ_SOURCE_DIR) / "tests" / "data" / "training_checkpoints";

std::vector<float> logits_of(Net& net) {
  std::vector<float> pixels(2 * 3 * 32 * 32);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::sin(0.37f * static_cast<float>(i));
  NoGradGuard no_grad;
  return net.forward(Tensor::from_vector(pixels, {2, 3, 32, 32})).to_vector();
}

TEST_CASE("load_model: training scripts' checkpoints load the weights that fit, EMA on request") {
  const std::string config = (kTrainingCheckpoints / "config.json").string();
  auto load = [&](const std::string& file, bool ema = false) {
    return load_model("resnet18", config, (kTrainingCheckpoints / file).string(), ema);
  };
  std::shared_ptr<Net> bare = load("bare.pth");
  const std::vector<float> bare_logits = logits_of(*bare);
  // The EMA copies hold half of each float tensor.
  TempDir temp;
  TensorMap ema_tensors;
  for (const auto& [name, tensor] : bare->state_dict()) {
    if (tensor.dtype() != DType::F32) {
      ema_tensors.emplace(name, tensor);
      continue;
    }
    std::vector<float> values = tensor.to_vector();
    for (float& v : values) v *= 0.5f;
    ema_tensors.emplace(name, Tensor::from_vector(values, tensor.shape()));
  }
  const fs::path ema_file = temp.path / "ema.safetensors";
  save_safetensors(ema_file.string(), ema_tensors);
  std::shared_ptr<Net> ema = load_model("resnet18", config, ema_file.string());
  const std::vector<float> ema_logits = logits_of(*ema);
  REQUIRE(ema_logits != bare_logits);

  for (const char* layout : {"imagenet_example", "timm_train", "deit_main", "swin_main"})
    for (const std::string& file : {std::string(layout) + ".pth",
                                    std::string(layout) + "_legacy.pth"}) {
      INFO(file);
      std::shared_ptr<Net> net = load(file);
      expect_same_tensors(net->state_dict(), bare->state_dict());
      CHECK(logits_of(*net) == bare_logits);
      if (std::string(layout) == "timm_train" || std::string(layout) == "deit_main") {
        std::shared_ptr<Net> averaged = load(file, /*ema=*/true);
        expect_same_tensors(averaged->state_dict(), ema->state_dict());
        CHECK(logits_of(*averaged) == ema_logits);
      }
    }
  for (const char* file : {"half.pth", "bfloat16_legacy.pth"}) {
    INFO(file);
    CHECK(logits_of(*load(file)) == bare_logits);
  }

  auto expect_words = [](const std::string& message, std::initializer_list<std::string> words) {
    for (const std::string& word : words)
      CHECK_MESSAGE(message.find(word) != std::string::npos, message << " lacks " << word);
  };
  const std::string imagenet = (kTrainingCheckpoints / "imagenet_example.pth").string();
  expect_words(testing::error_message([&] { load("imagenet_example.pth", /*ema=*/true); }),
               {"--ema", imagenet, "holds no EMA copy", "the top level (1 tensor)",
                "'state_dict' (74 tensors)"});
  // The standard resnet18 has two blocks a stage: no state dict fits; the
  // message lists them and the closest one's mismatches.
  const std::string timm = (kTrainingCheckpoints / "timm_train.pth").string();
  expect_words(testing::error_message([&] { load_model("resnet18", "", timm); }),
               {timm, "does not fit resnet18 (standard configuration)", "holds 2 state dicts",
                "'state_dict' (74 tensors), 'state_dict_ema' (74 tensors)",
                "the closest is 'state_dict'", "keys missing from the file: layer1.1.",
                "--model_config"});
}

TEST_CASE("packptq eval --ema evaluates a training checkpoint's EMA weights") {
  TempDir temp;
  const fs::path report = temp.path / "report.json";
  const std::vector<std::string> args = {
      "--model_name", "resnet18", "--model_config",
      (kTrainingCheckpoints / "config.json").string(), "--weights",
      (kTrainingCheckpoints / "deit_main_legacy.pth").string(), "--dataset_path",
      kFashion.string(), "--report_json", report.string()};
  std::vector<std::string> with_ema = args;
  with_ema.push_back("--ema");
  REQUIRE(run_eval_with(with_ema) == 0);
  const nlohmann::json json = read_json(report);
  CHECK(json.at("ema") == true);
  CHECK(json.at("images") == 1000);
  // A quantized model's file holds its weights: --ema has nothing to choose.
  CHECK(run_eval_with({"--quantized", "x.safetensors", "--ema", "--dataset_path",
                       kFashion.string()}) == 2);
}

// A fixture's tensors under another release's names load, adapted, to
// exactly the fixture's; the names alone do not fit, and the fixture's own
// names pass unchanged.
void check_renamed_checkpoint(const std::string& fixture, const TensorMap& renamed) {
  TempDir temp;
  const fs::path file = temp.path / "renamed.safetensors";
  save_safetensors(file.string(), renamed);
  std::shared_ptr<Net> current =
      load_model(model_name_of(fixture), config_of(fixture), weights_of(fixture));
  CHECK_FALSE(create_net(model_name_of(fixture), read_json(config_of(fixture)))
                  ->load_state_dict(renamed, false)
                  .ok());
  std::shared_ptr<Net> adapted =
      load_model(model_name_of(fixture), config_of(fixture), file.string());
  expect_same_tensors(adapted->state_dict(), current->state_dict());
  const TensorMap as_saved = load_checkpoint(weights_of(fixture, "model.safetensors"));
  expect_same_tensors(current->adapt_checkpoint(as_saved), as_saved);
}

// swin_t32 as timm before 0.9 and the original Swin release store it: the
// patch merging of stage i + 1 at the end of stage i, the classifier as
// "head", and the derived index and mask buffers in the file.
TEST_CASE("load_model: Swin checkpoints in the layout of timm < 0.9 load as timm 1.0.9's") {
  const std::string fixture = "swin_t32";
  TensorMap old_layout;
  for (auto& [name, tensor] : load_checkpoint(weights_of(fixture, "model.safetensors"))) {
    std::string key = name;
    for (const char* stage : {"1", "2"})
      if (key.rfind("layers." + std::string(stage) + ".downsample.", 0) == 0)
        key = "layers." + std::to_string(std::stoi(stage) - 1) + key.substr(8);
    if (key.rfind("head.fc.", 0) == 0) key = "head." + key.substr(8);
    old_layout.emplace(key, tensor);
  }
  for (int stage = 0; stage < 3; ++stage)
    for (int block = 0; block < 2; ++block) {
      const std::string p = "layers." + std::to_string(stage) + ".blocks." + std::to_string(block);
      old_layout.emplace(p + ".attn.relative_position_index",
                         Tensor::from_int64(std::vector<int64_t>(256, 7), {16, 16}));
      if (block == 1 && stage < 2) old_layout.emplace(p + ".attn_mask", Tensor::zeros({16, 16, 16}));
    }
  REQUIRE(old_layout.count("layers.0.downsample.reduction.weight"));
  REQUIRE(old_layout.count("head.weight"));
  REQUIRE_FALSE(old_layout.count("layers.2.downsample.norm.weight"));
  check_renamed_checkpoint(fixture, old_layout);
}

// mobilenetv2_w050 under torchvision's MobileNetV2 names: each expand and
// depthwise conv with its BN in a nested Sequential, the projection after.
TEST_CASE("load_model: MobileNetV2 checkpoints with torchvision's names load as BRECQ's") {
  const std::string fixture = "mobilenetv2_w050";
  const TensorMap brecq = load_checkpoint(weights_of(fixture, "model.safetensors"));
  // BRECQ's conv.<slot> -> torchvision's, for blocks with and without the expand conv.
  const std::map<std::string, std::string> expand = {{"0", "0.0"}, {"1", "0.1"}, {"3", "1.0"},
                                                     {"4", "1.1"}, {"6", "2"},   {"7", "3"}};
  const std::map<std::string, std::string> no_expand = {
      {"0", "0.0"}, {"1", "0.1"}, {"3", "1"}, {"4", "2"}};
  TensorMap torchvision;
  int renamed = 0;
  for (auto& [name, tensor] : brecq) {
    std::string key = name;
    const size_t conv = key.find(".conv.");
    if (conv != std::string::npos) {
      const std::string block = key.substr(0, conv);
      const bool has_expand = brecq.count(block + ".conv.6.weight") > 0;
      const size_t slot_end = key.find('.', conv + 6);
      const std::string slot = key.substr(conv + 6, slot_end - conv - 6);
      key = block + ".conv." + (has_expand ? expand : no_expand).at(slot) + key.substr(slot_end);
      ++renamed;
    }
    torchvision.emplace(key, tensor);
  }
  REQUIRE(renamed > 0);
  REQUIRE(torchvision.count("features.1.conv.1.weight"));  // t = 1: the projection conv
  REQUIRE(torchvision.at("features.1.conv.1.weight").dim() == 4);
  REQUIRE(torchvision.count("features.2.conv.1.0.weight"));  // the depthwise conv
  check_renamed_checkpoint(fixture, torchvision);
}

TEST_CASE("packptq eval: bad input fails with an exit code and writes no report") {
  TempDir temp;
  const fs::path report = temp.path / "report.json";
  const std::string fixture = "resnet18_w16";
  const std::string good_data = kFashion.string();

  // Truncated checkpoints of both formats, a malformed config, a dataset
  // with a truncated JPEG and one with too few classes.
  const fs::path truncated_pth = temp.path / "truncated.pth";
  const fs::path truncated_safetensors = temp.path / "truncated.safetensors";
  const std::string pth = read_bytes(weights_of(fixture));
  const std::string safetensors = read_bytes(weights_of(fixture, "model.safetensors"));
  write_bytes(truncated_pth, pth.substr(0, pth.size() / 2));
  write_bytes(truncated_safetensors, safetensors.substr(0, safetensors.size() / 2));
  const fs::path bad_config = temp.path / "config.json";
  write_bytes(bad_config, "{\"model_name\": \"resnet18\", ");
  const fs::path corrupt_data = temp.path / "corrupt";
  testing::link_image_subset(kFashion, corrupt_data, "val", 1);
  const fs::path victim = fs::directory_iterator(corrupt_data / "val" / "05_sandal")->path();
  const std::string jpeg = read_bytes(victim);
  fs::remove(victim);
  write_bytes(victim, jpeg.substr(0, jpeg.size() / 3));
  const fs::path two_classes = temp.path / "two_classes";
  for (const char* name : {"a", "b"}) {
    fs::create_directories(two_classes / "val" / name);
    fs::create_symlink(val_samples().front().path, two_classes / "val" / name / "x.jpg");
  }

  struct Case {
    const char* what;
    int expected_rc;
    std::vector<std::string> args;  // replacing the defaults below
  };
  const std::vector<Case> cases = {
      {"unknown flag", 2, {"--batchsize", "8"}},
      {"missing --weights", 2, {"--weights", ""}},
      {"missing --dataset_path", 2, {"--dataset_path", ""}},
      {"--batch_size abc", 2, {"--batch_size", "abc"}},
      {"--batch_size 0", 2, {"--batch_size", "0"}},
      {"--threads -1", 2, {"--threads", "-1"}},
      {"unknown model name", 2, {"--model_name", "resnet19"}},
      {"report folder missing", 2, {"--report_json", (temp.path / "no/report.json").string()}},
      {"nonexistent weights", 1, {"--weights", (temp.path / "none.pth").string()}},
      {"weights of another model", 1, {"--weights", weights_of("resnet50_w16")}},
      {"truncated .pth", 1, {"--weights", truncated_pth.string()}},
      {"truncated .safetensors", 1, {"--weights", truncated_safetensors.string()}},
      {"config of another model", 1, {"--model_config", config_of("resnet50_w16")}},
      {"malformed config", 1, {"--model_config", bad_config.string()}},
      {"missing dataset folder", 1, {"--dataset_path", (temp.path / "nowhere").string()}},
      {"missing split", 1, {"--split", "test"}},
      {"class count differs from the model's", 1, {"--dataset_path", two_classes.string()}},
      {"truncated JPEG", 1, {"--dataset_path", corrupt_data.string()}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    std::map<std::string, std::string> flags = {{"--model_name", model_name_of(fixture)},
                                                {"--model_config", config_of(fixture)},
                                                {"--weights", weights_of(fixture)},
                                                {"--dataset_path", good_data},
                                                {"--report_json", report.string()}};
    std::vector<std::string> args;
    for (size_t i = 0; i + 1 < c.args.size(); i += 2) flags[c.args[i]] = c.args[i + 1];
    for (const auto& [flag, value] : flags)
      if (!value.empty()) args.insert(args.end(), {flag, value});
    CHECK(run_eval_with(args) == c.expected_rc);
    CHECK_FALSE(fs::exists(report));
  }
}
