// The built-in default run's pieces: the idx reader on Debian's
// dataset-fashion-mnist files (installed by tools/setup_debian.sh, so their
// absence is a failure), the conversion into a cached ImageFolder against the
// shared fashion32 fixtures, training with the engine's autograd, and the
// reuse of the cached dataset and model.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "nets/init.h"
#include "tests/testing.h"
#include "tools/cli/commands.h"
#include "nets/load_model.h"
#include "tools/cli/fashion_mnist.h"

using namespace pk;
using namespace pk::cli;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = testing::fixtures_dir();

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// An idx header: magic 0x000008<dims>, then each size big-endian.
std::vector<uint8_t> idx_header(const std::vector<uint32_t>& sizes) {
  std::vector<uint8_t> bytes = {0, 0, 8, static_cast<uint8_t>(sizes.size())};
  for (uint32_t size : sizes)
    for (int shift = 24; shift >= 0; shift -= 8)
      bytes.push_back(static_cast<uint8_t>(size >> shift));
  return bytes;
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Largest and mean absolute difference of two images of the same size.
std::pair<int, double> pixel_difference(const data::Image& a, const data::Image& b) {
  REQUIRE(a.width == b.width);
  REQUIRE(a.height == b.height);
  int worst = 0;
  double total = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int diff = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    worst = std::max(worst, diff);
    total += diff;
  }
  return {worst, total / a.pixels.size()};
}

fs::file_time_type mtime(const fs::path& path) { return fs::last_write_time(path); }

}  // namespace

TEST_CASE("read_fashion_mnist reads the Debian package's train and test splits") {
  const std::pair<std::string, int64_t> splits[] = {{"train", 60000}, {"t10k", 10000}};
  for (const auto& entry : splits) {
    const auto& split = entry.first;
    const auto& count = entry.second;
    CAPTURE(split);
    const IdxImages images = read_fashion_mnist(kFashionMnistSourceDir, split);
    CHECK(images.count == count);
    CHECK(images.rows == 28);
    CHECK(images.cols == 28);
    REQUIRE(images.pixels.size() == static_cast<size_t>(count * 28 * 28));
    REQUIRE(images.labels.size() == static_cast<size_t>(count));
    // Fashion-MNIST is balanced: every class has a tenth of each split.
    std::vector<int64_t> per_class(10, 0);
    for (uint8_t label : images.labels) ++per_class.at(label);
    for (int c = 0; c < 10; ++c) CHECK_MESSAGE(per_class[c] == count / 10, "class " << c);
    // Real images: dark background corners, some bright pixels.
    const uint8_t* first = images.image(0);
    CHECK(first[0] == 0);
    CHECK(*std::max_element(first, first + 28 * 28) > 200);
  }
}

TEST_CASE("read_fashion_mnist names the file and the problem for missing or corrupt data") {
  TempDir dir;
  const std::string missing = error_of([&] { read_fashion_mnist(dir.path.string(), "train"); });
  CHECK(missing.find("train-images-idx3-ubyte.gz") != std::string::npos);
  CHECK(missing.find("dataset-fashion-mnist") != std::string::npos);
  CHECK(error_of([&] { read_fashion_mnist(dir.path.string(), "test"); }).find("'t10k'") !=
        std::string::npos);

  // zlib reads files without a gzip header as they are, so plain idx bytes
  // under the .gz names exercise the parser.
  const fs::path images = dir.path / "t10k-images-idx3-ubyte.gz";
  const fs::path labels = dir.path / "t10k-labels-idx1-ubyte.gz";
  std::vector<uint8_t> good_images = idx_header({2, 28, 28});
  good_images.resize(good_images.size() + 2 * 28 * 28, 7);
  std::vector<uint8_t> good_labels = idx_header({2});
  good_labels.insert(good_labels.end(), {3, 9});
  write_bytes(images, good_images);
  write_bytes(labels, good_labels);
  const IdxImages two = read_fashion_mnist(dir.path.string(), "t10k");
  CHECK(two.count == 2);
  CHECK(two.labels == std::vector<uint8_t>{3, 9});
  CHECK(two.pixels == std::vector<uint8_t>(2 * 28 * 28, 7));

  std::vector<uint8_t> bad_magic = good_images;
  bad_magic[2] = 9;
  write_bytes(images, bad_magic);
  CHECK(error_of([&] { read_fashion_mnist(dir.path.string(), "t10k"); }).find("bad idx magic") !=
        std::string::npos);

  std::vector<uint8_t> truncated(good_images.begin(), good_images.end() - 1);
  write_bytes(images, truncated);
  CHECK(error_of([&] { read_fashion_mnist(dir.path.string(), "t10k"); }).find("data bytes") !=
        std::string::npos);

  write_bytes(images, good_images);
  std::vector<uint8_t> bad_label = good_labels;
  bad_label.back() = 10;
  write_bytes(labels, bad_label);
  CHECK(error_of([&] { read_fashion_mnist(dir.path.string(), "t10k"); }).find("label 10") !=
        std::string::npos);

  std::vector<uint8_t> three_labels = idx_header({3});
  three_labels.insert(three_labels.end(), {1, 2, 3});
  write_bytes(labels, three_labels);
  CHECK(error_of([&] { read_fashion_mnist(dir.path.string(), "t10k"); }).find("3 labels") !=
        std::string::npos);
}

TEST_CASE("converted images decode to the pixels of the fashion32 fixtures") {
  // fashion32/val holds test images under their index, made with PIL
  // (bilinear 28->32, RGB, JPEG quality 95); ours must decode to the same pixels.
  const IdxImages test = read_fashion_mnist(kFashionMnistSourceDir, "t10k");
  int compared = 0;
  for (int64_t index : {19, 27, 35, 13, 0, 1}) {
    const std::string name = [&] {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%06lld.jpg", static_cast<long long>(index));
      return std::string(buf);
    }();
    const fs::path fixture =
        kFixtures / "fashion32" / "val" / fashion_mnist_classes()[test.labels[index]] / name;
    if (!fs::exists(fixture)) continue;  // the fixture keeps 100 images per class
    CAPTURE(fixture);
    const data::Image ours = fashion_image_rgb32(test.image(index), test.rows, test.cols);
    CHECK(ours.width == 32);
    CHECK(ours.height == 32);
    const std::vector<uint8_t> jpeg = encode_jpeg(ours, 95);
    const data::Image decoded = data::decode_jpeg(jpeg.data(), jpeg.size(), "encoded");
    const auto [worst, mean] = pixel_difference(decoded, data::read_jpeg(fixture.string()));
    CHECK(worst == 0);
    ++compared;
  }
  CHECK(compared >= 3);
}

TEST_CASE("prepare_fashion_mnist builds a valid ImageFolder once and rebuilds it for a new spec") {
  TempDir dir;
  const fs::path root = dir.path / "fashion_mnist";
  // A leftover of an interrupted run by a process that no longer exists.
  const fs::path stale = dir.path / "fashion_mnist.partial-999999999";
  fs::create_directories(stale / "train");
  FashionCacheSpec spec;
  spec.train_images = 60;
  spec.val_images = 30;
  REQUIRE(prepare_fashion_mnist(root.string(), spec));
  CHECK_FALSE(fs::exists(stale));

  const data::ImageFolder train = data::scan_image_folder(root.string(), "train");
  const data::ImageFolder val = data::scan_image_folder(root.string(), "val");
  CHECK(train.classes == fashion_mnist_classes());
  CHECK(val.classes == fashion_mnist_classes());
  CHECK(train.samples.size() == 60);
  CHECK(val.samples.size() == 30);

  // Each file is its source image, within JPEG's loss (at most 9 and 1.33 on
  // average over the first 2000 train images), under its split index and in
  // its label's folder.
  const IdxImages source = read_fashion_mnist(kFashionMnistSourceDir, "train");
  for (const data::Sample& sample : train.samples) {
    CAPTURE(sample.path);
    const int64_t index = std::stoll(fs::path(sample.path).stem().string());
    REQUIRE(index < 60);
    CHECK(sample.label == source.labels[index]);
    const data::Image expected = fashion_image_rgb32(source.image(index), 28, 28);
    const auto [worst, mean] = pixel_difference(data::read_jpeg(sample.path), expected);
    CHECK(worst <= 16);
    CHECK(mean <= 1.5);
  }

  // Same spec: nothing is rewritten.
  const fs::path probe = train.samples.front().path;
  const auto written = mtime(probe);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(prepare_fashion_mnist(root.string(), spec));
  CHECK(mtime(probe) == written);

  // Another spec replaces the cache, leaving no temporary folders behind
  // (also when the path ends in a separator).
  spec.val_images = 20;
  CHECK(prepare_fashion_mnist(root.string() + "/", spec));
  CHECK(data::scan_image_folder(root.string(), "val").samples.size() == 20);
  for (const auto& entry : fs::directory_iterator(dir.path))
    CHECK_MESSAGE(entry.path().filename() == "fashion_mnist", entry.path());
}

namespace {

// A small converted dataset shared by the training tests (built once).
const std::string& tiny_dataset() {
  static TempDir dir;
  static const std::string root = [] {
    FashionCacheSpec spec;
    spec.train_images = 64;
    spec.val_images = 10;
    const std::string path = (dir.path / "fashion_mnist").string();
    prepare_fashion_mnist(path, spec);
    return path;
  }();
  return root;
}

}  // namespace

TEST_CASE("train_classifier lowers the loss of the default model on a few images") {
  const data::ImageFolder train = data::scan_image_folder(tiny_dataset(), "train");
  std::shared_ptr<Net> net = create_net("resnet18", default_model_config());
  init_random(*net, 3);
  const std::vector<float> running_mean_before =
      net->state_dict().at("bn1.running_mean").to_vector();
  TrainOptions options;
  options.epochs = 8;
  options.batch_size = 32;
  options.seed = 3;
  const TrainStats stats =
      train_classifier(*net, train.samples, data::preprocess_config(net->preprocess()), options);
  CHECK(stats.steps == 8 * 2);
  MESSAGE("loss " << stats.first_loss << " -> " << stats.last_epoch_loss << ", train accuracy "
                  << stats.last_epoch_accuracy << "%");
  CHECK(std::isfinite(stats.first_loss));
  CHECK(stats.last_epoch_loss < 0.5 * stats.first_loss);
  CHECK(stats.last_epoch_accuracy > 60.0);
  CHECK_FALSE(net->training());
  // Training mode updated BatchNorm's running statistics.
  CHECK(net->state_dict().at("bn1.running_mean").to_vector() != running_mean_before);

  // Too few images for a BatchNorm batch is an error, not a silent no-op.
  const std::vector<data::Sample> one(train.samples.begin(), train.samples.begin() + 1);
  CHECK_THROWS_AS(train_classifier(*net, one, data::preprocess_config(net->preprocess()), options),
                  std::invalid_argument);
}

TEST_CASE("prepare_default_model trains once, then reuses the cached weights") {
  TempDir dir;
  const std::string model_dir = (dir.path / "model").string();
  TrainOptions options;
  options.epochs = 1;
  options.batch_size = 32;

  const DefaultModel first = prepare_default_model(model_dir, tiny_dataset(), options);
  CHECK(first.trained);
  REQUIRE(fs::exists(first.weights_path));
  CHECK(load_safetensors_metadata(first.weights_path).count("recipe") == 1);
  // The files form a model that the quantize and eval commands can load.
  std::shared_ptr<Net> loaded = load_model("resnet18", first.config_path, first.weights_path);
  CHECK(loaded->num_classes() == 10);
  CHECK(loaded->preprocess().input_size == 32);

  const auto written = mtime(first.weights_path);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const DefaultModel second = prepare_default_model(model_dir, tiny_dataset(), options);
  CHECK_FALSE(second.trained);
  CHECK(second.weights_path == first.weights_path);
  CHECK(mtime(first.weights_path) == written);

  // Another recipe, or a damaged file, trains again.
  options.seed = 1;
  CHECK(prepare_default_model(model_dir, tiny_dataset(), options).trained);
  write_bytes(first.weights_path, {1, 2, 3});
  CHECK(prepare_default_model(model_dir, tiny_dataset(), options).trained);
  CHECK_NOTHROW(load_model("resnet18", first.config_path, first.weights_path));
}

namespace {

// Runs `packptq default ARGS...` in-process and returns its exit code.
int run_default_with(std::vector<std::string> args) {
  args.insert(args.begin(), "default");
  return testing::run_command(run_default, std::move(args));
}

}  // namespace

TEST_CASE("packptq default: --help and bad flags return before any work") {
  TempDir dir;
  const std::string cache = "--cache_dir=" + (dir.path / "cache").string();
  CHECK(run_default_with({"--help"}) == 0);
  CHECK(run_default_with({cache, "--calibration_iterations", "0"}) == 2);
  CHECK(run_default_with({cache, "--threads", "-1"}) == 2);
  CHECK(run_default_with({cache, "--model_name", "resnet50"}) == 2);
  CHECK(run_default_with({cache, "--output_dir", ""}) == 2);
  CHECK_FALSE(fs::exists(dir.path / "cache"));
}
