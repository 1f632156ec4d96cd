#include "tools/cli/fashion_mnist.h"

#include <signal.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/log.h"
#include "engine/optim.h"
#include "engine/output_files.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "nets/init.h"
#include "nets/load_model.h"

namespace pk::cli {

namespace fs = std::filesystem;

const char* const kFashionMnistSourceDir = "/usr/share/datasets/fashion-mnist";

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> classes = {
      "00_tshirt_top", "01_trouser", "02_pullover", "03_dress", "04_coat",
      "05_sandal",     "06_shirt",   "07_sneaker",  "08_bag",   "09_ankle_boot"};
  return classes;
}

// ---- idx files ----

namespace {

constexpr int kImageSize = 32;  // the fixtures' and the default model's input size
constexpr int kJpegQuality = 95;

std::vector<uint8_t> read_gzip(const std::string& path) {
  if (!fs::is_regular_file(path))
    throw std::runtime_error("Fashion-MNIST file '" + path +
                             "' is missing: install Debian's dataset-fashion-mnist package "
                             "(sudo apt-get install dataset-fashion-mnist, or run "
                             "tools/setup_debian.sh)");
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> chunk(1 << 20);
  int read = 0;
  while ((read = gzread(file, chunk.data(), static_cast<unsigned>(chunk.size()))) > 0)
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + read);
  int error = Z_OK;
  const std::string message = read < 0 ? gzerror(file, &error) : "";
  gzclose(file);
  if (read < 0) throw std::runtime_error("cannot decompress '" + path + "': " + message);
  return bytes;
}

uint32_t big_endian_u32(const std::vector<uint8_t>& bytes, size_t offset) {
  return (uint32_t(bytes[offset]) << 24) | (uint32_t(bytes[offset + 1]) << 16) |
         (uint32_t(bytes[offset + 2]) << 8) | uint32_t(bytes[offset + 3]);
}

// Checks an idx header (magic 0x0000 08 <dims>: unsigned bytes) and returns its sizes.
std::vector<int64_t> idx_dims(const std::vector<uint8_t>& bytes, int dims,
                              const std::string& path) {
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (bytes.size() < header) throw std::runtime_error("'" + path + "': truncated idx header");
  const uint32_t magic = big_endian_u32(bytes, 0);
  if (magic != 0x800u + static_cast<uint32_t>(dims)) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "bad idx magic 0x%08x (expected 0x%08x, %d-d unsigned bytes)",
                  magic, 0x800u + dims, dims);
    throw std::runtime_error("'" + path + "': " + buf);
  }
  std::vector<int64_t> sizes(dims);
  int64_t total = 1;
  for (int d = 0; d < dims; ++d) total *= sizes[d] = big_endian_u32(bytes, 4 + 4 * d);
  if (bytes.size() != header + static_cast<size_t>(total))
    throw std::runtime_error("'" + path + "': " + std::to_string(bytes.size() - header) +
                             " data bytes for a header announcing " + std::to_string(total));
  return sizes;
}

}  // namespace

IdxImages read_fashion_mnist(const std::string& source_dir, const std::string& split) {
  check(split == "train" || split == "t10k",
        "read_fashion_mnist: split must be 'train' or 't10k', got '" + split + "'");
  const std::string images_path = source_dir + "/" + split + "-images-idx3-ubyte.gz";
  const std::string labels_path = source_dir + "/" + split + "-labels-idx1-ubyte.gz";
  std::vector<uint8_t> images = read_gzip(images_path);
  std::vector<uint8_t> labels = read_gzip(labels_path);
  const std::vector<int64_t> image_dims = idx_dims(images, 3, images_path);
  const std::vector<int64_t> label_dims = idx_dims(labels, 1, labels_path);
  if (image_dims[0] != label_dims[0])
    throw std::runtime_error("'" + images_path + "' holds " + std::to_string(image_dims[0]) +
                             " images but '" + labels_path + "' " + std::to_string(label_dims[0]) +
                             " labels");
  IdxImages out;
  out.count = image_dims[0];
  out.rows = static_cast<int>(image_dims[1]);
  out.cols = static_cast<int>(image_dims[2]);
  out.pixels.assign(images.begin() + 16, images.end());
  out.labels.assign(labels.begin() + 8, labels.end());
  const int64_t classes = static_cast<int64_t>(fashion_mnist_classes().size());
  for (int64_t i = 0; i < out.count; ++i)
    if (out.labels[i] >= classes)
      throw std::runtime_error("'" + labels_path + "': label " + std::to_string(out.labels[i]) +
                               " of item " + std::to_string(i) + " is not a class 0.." +
                               std::to_string(classes - 1));
  return out;
}

// ---- conversion ----

data::Image fashion_image_rgb32(const uint8_t* gray, int rows, int cols) {
  data::Image rgb(cols, rows);
  for (int64_t p = 0; p < int64_t(rows) * cols; ++p)
    std::fill_n(rgb.pixels.data() + 3 * p, 3, gray[p]);
  // Resizing equal channels gives each channel PIL's resize of the gray image.
  return data::resize(rgb, kImageSize, kImageSize, data::Interpolation::Bilinear);
}

std::vector<uint8_t> encode_jpeg(const data::Image& image, int quality) {
  tjhandle handle = tjInitCompress();
  if (!handle) throw std::runtime_error(std::string("TurboJPEG: ") + tjGetErrorStr2(nullptr));
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  // TurboJPEG defaults to the fast DCT; PIL (libjpeg) uses the accurate one.
  const int status = tjCompress2(handle, image.pixels.data(), image.width, 0, image.height,
                                 TJPF_RGB, &jpeg, &size, TJSAMP_420, quality, TJFLAG_ACCURATEDCT);
  const std::string error = status != 0 ? tjGetErrorStr2(handle) : "";
  std::vector<uint8_t> bytes;
  if (status == 0) bytes.assign(jpeg, jpeg + size);
  tjFree(jpeg);
  tjDestroy(handle);
  if (status != 0) throw std::runtime_error("TurboJPEG cannot encode: " + error);
  return bytes;
}

namespace {

nlohmann::json conversion_record(const FashionCacheSpec& spec, int64_t train, int64_t val) {
  return {{"source", "Fashion-MNIST, Debian package dataset-fashion-mnist"},
          {"source_dir", spec.source_dir},
          {"train_images", train},
          {"val_images", val},
          {"format", "28x28 gray -> PIL bilinear 32x32 -> RGB -> JPEG q95 4:2:0 islow"}};
}

// The conversion a finished cache recorded, or null.
nlohmann::json read_record(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nullptr;
  }
}

void write_file(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  bool ok = file && std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  if (file) ok = std::fclose(file) == 0 && ok;
  if (!ok)
    throw std::runtime_error("cannot write '" + path.string() + "': " + std::strerror(errno));
}

// Writes the first `count` images of `split` as <folder>/<class>/<index>.jpg.
void convert_split(const IdxImages& split, int64_t count, const fs::path& folder,
                   const std::string& label) {
  for (const std::string& name : fashion_mnist_classes()) fs::create_directories(folder / name);
  Progress progress(label, count, "img");
  std::vector<std::string> errors(count);
  // Chunks keep the progress line moving from the main thread.
  constexpr int64_t kChunk = 2048;
  for (int64_t begin = 0; begin < count; begin += kChunk) {
    const int64_t end = std::min(count, begin + kChunk);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = begin; i < end; ++i) {
      try {
        char name[16];
        std::snprintf(name, sizeof name, "%06lld.jpg", static_cast<long long>(i));
        const data::Image image = fashion_image_rgb32(split.image(i), split.rows, split.cols);
        write_file(folder / fashion_mnist_classes()[split.labels[i]] / name,
                   encode_jpeg(image, kJpegQuality));
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    for (int64_t i = begin; i < end; ++i)
      if (!errors[i].empty()) throw std::runtime_error(errors[i]);
    progress.update(end);
  }
  progress.finish();
}

// Removes <root>.partial-<pid> folders whose process no longer runs.
void remove_stale_partials(const fs::path& root) {
  const fs::path parent = root.parent_path().empty() ? fs::path(".") : root.parent_path();
  const std::string prefix = root.filename().string() + ".partial-";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(parent, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::atol(name.c_str() + prefix.size());
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      log_line("removing the unfinished conversion " + entry.path().string());
      fs::remove_all(entry.path(), error);
    }
  }
}

}  // namespace

bool prepare_fashion_mnist(const std::string& root_path, const FashionCacheSpec& spec) {
  fs::path root = fs::path(root_path).lexically_normal();
  if (!root.has_filename()) root = root.parent_path();  // "cache/fashion_mnist/"
  const fs::path record_path = root / "conversion.json";
  const nlohmann::json existing = read_record(record_path);
  // Counts are checked against the record before the idx files are read, so a
  // cached dataset needs no source files at all.
  if (spec.train_images > 0 && spec.val_images > 0 &&
      existing == conversion_record(spec, spec.train_images, spec.val_images)) {
    log_line("dataset: using the cached " + root.string());
    return false;
  }

  log_line("dataset: reading Fashion-MNIST from " + spec.source_dir);
  const IdxImages train = read_fashion_mnist(spec.source_dir, "train");
  const IdxImages val = read_fashion_mnist(spec.source_dir, "t10k");
  auto clamp_count = [](int64_t wanted, int64_t available) {
    return wanted <= 0 ? available : std::min(wanted, available);
  };
  const int64_t train_count = clamp_count(spec.train_images, train.count);
  const int64_t val_count = clamp_count(spec.val_images, val.count);
  const nlohmann::json record = conversion_record(spec, train_count, val_count);
  if (existing == record) {
    log_line("dataset: using the cached " + root.string());
    return false;
  }

  fs::create_directories(root.parent_path().empty() ? fs::path(".") : root.parent_path());
  remove_stale_partials(root);
  const fs::path partial = root.string() + ".partial-" + std::to_string(getpid());
  fs::remove_all(partial);
  log_line("dataset: converting " + std::to_string(train_count) + " train and " +
           std::to_string(val_count) + " test images to 32x32 JPEG in " + root.string());
  convert_split(train, train_count, partial / "train", "convert train");
  convert_split(val, val_count, partial / "val", "convert val");
  write_json_atomic((partial / "conversion.json").string(), record);

  // An outdated cache is moved aside first: rename() cannot replace a
  // non-empty folder.
  if (fs::exists(root)) {
    const fs::path old = root.string() + ".old-" + std::to_string(getpid());
    fs::rename(root, old);
    fs::rename(partial, root);
    fs::remove_all(old);
  } else {
    fs::rename(partial, root);
  }
  return true;
}

// ---- the default model ----

nlohmann::json default_model_config() {
  return {{"name", "resnet18_w16_fashion"},
          {"model_name", "resnet18"},
          {"family", "resnet"},
          {"block", "BasicBlock"},
          {"layers", {2, 2, 2, 2}},
          {"width", 16},
          {"stage_planes", {16, 32, 64, 128}},
          {"num_classes", 10},
          {"in_chans", 3},
          {"input_size", kImageSize},
          {"crop_pct", 1.0},
          {"interpolation", "bilinear"},
          {"mean", {0.485, 0.456, 0.406}},
          {"std", {0.229, 0.224, 0.225}}};
}

namespace {

// Mirrors each image of an NCHW batch with probability 1/2.
void random_hflip(Tensor& images, Generator& generator) {
  const int64_t n = images.size(0), planes = images.size(1) * images.size(2);
  const int64_t width = images.size(3);
  float* data = images.data();
  for (int64_t i = 0; i < n; ++i) {
    if (generator.uniform() >= 0.5f) continue;
    float* image = data + i * planes * width;
    for (int64_t row = 0; row < planes; ++row)
      std::reverse(image + row * width, image + (row + 1) * width);
  }
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const std::vector<float> values = logits.to_vector();
  const std::vector<int64_t> truth = labels.to_int64_vector();
  const int64_t classes = logits.size(1);
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    const float* row = values.data() + i * classes;
    correct += std::max_element(row, row + classes) - row == truth[i];
  }
  return correct;
}

std::string fixed(double value, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

}  // namespace

TrainStats train_classifier(Net& net, const std::vector<data::Sample>& samples,
                            const data::PreprocessConfig& preprocess, const TrainOptions& options) {
  const int64_t n = static_cast<int64_t>(samples.size());
  check(n >= 2 && options.epochs > 0 && options.batch_size >= 2,
        "train_classifier: needs at least 2 samples, a positive epoch count and batches of 2 or "
        "more; got " +
            std::to_string(n) + " samples, " + std::to_string(options.epochs) + " epochs, batch " +
            std::to_string(options.batch_size));
  // Full batches only: a last batch of one image has no BatchNorm statistics.
  const int64_t batch = std::min(options.batch_size, n);
  const int64_t steps_per_epoch = n / batch;
  const int64_t total_steps = steps_per_epoch * options.epochs;

  Generator generator(options.seed);
  Adam adam(net.parameters(), options.learning_rate, 0.9f, 0.999f, 1e-8f, options.weight_decay);
  CosineSchedule schedule(adam, total_steps);
  net.train();
  TrainStats stats;
  Progress progress("train", total_steps, "step");
  std::vector<int64_t> order(n);
  std::vector<data::Sample> shuffled(n);
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[generator.randint(i + 1)]);
    for (int64_t i = 0; i < n; ++i) shuffled[i] = samples[order[i]];
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      data::Batch data = data::load_batch(shuffled, step * batch, (step + 1) * batch, preprocess);
      if (options.hflip) random_hflip(data.images, generator);
      adam.zero_grad();
      const Tensor logits = net.forward(data.images);
      const Tensor loss = cross_entropy(logits, data.labels);
      loss.backward();
      adam.step();
      schedule.step();

      const double value = loss.item();
      if (stats.steps == 0) stats.first_loss = value;
      ++stats.steps;
      loss_sum += value;
      correct += count_correct(logits.detach(), data.labels);
      seen += batch;
      progress.update(stats.steps, "epoch " + std::to_string(epoch + 1) + "/" +
                                       std::to_string(options.epochs) + " loss " +
                                       fixed(loss_sum / (step + 1), 4) + " acc " +
                                       fixed(100.0 * correct / seen, 2) + "%");
    }
    stats.last_epoch_loss = loss_sum / steps_per_epoch;
    stats.last_epoch_accuracy = 100.0 * correct / seen;
  }
  stats.seconds = progress.elapsed_seconds();
  progress.finish("loss " + fixed(stats.last_epoch_loss, 4) + " train acc " +
                  fixed(stats.last_epoch_accuracy, 2) + "% (last epoch)");
  net.eval();
  return stats;
}

namespace {

// What the cached weights must have been trained with to be reused.
std::string training_recipe(const TrainOptions& options, const data::ImageFolder& train) {
  return nlohmann::json{{"model", default_model_config()},
                        {"train_images", train.samples.size()},
                        {"epochs", options.epochs},
                        {"batch_size", options.batch_size},
                        {"learning_rate", options.learning_rate},
                        {"weight_decay", options.weight_decay},
                        {"hflip", options.hflip},
                        {"seed", options.seed}}
      .dump();
}

bool cached_model_usable(const DefaultModel& model, const std::string& recipe) {
  if (!fs::exists(model.weights_path)) return false;
  try {
    const auto metadata = load_safetensors_metadata(model.weights_path);
    const auto found = metadata.find("recipe");
    if (found == metadata.end() || found->second != recipe) {
      log_line("model: " + model.weights_path + " was trained with another recipe; retraining");
      return false;
    }
    load_model("resnet18", model.config_path, model.weights_path);
    return true;
  } catch (const std::exception& e) {
    log_line("model: cannot use " + model.weights_path + " (" + e.what() + "); retraining");
    return false;
  }
}

}  // namespace

DefaultModel prepare_default_model(const std::string& model_dir, const std::string& dataset_root,
                                   const TrainOptions& options) {
  fs::create_directories(model_dir);
  DefaultModel model;
  model.config_path = (fs::path(model_dir) / "config.json").string();
  model.weights_path = (fs::path(model_dir) / "model.safetensors").string();
  const nlohmann::json config = default_model_config();
  if (read_record(model.config_path) != config) write_json_atomic(model.config_path, config);

  const data::ImageFolder train = data::scan_image_folder(dataset_root, "train");
  const std::string recipe = training_recipe(options, train);
  if (cached_model_usable(model, recipe)) {
    log_line("model: using the cached " + model.weights_path);
    return model;
  }

  std::shared_ptr<Net> net = create_net("resnet18", config);
  check(static_cast<int64_t>(train.classes.size()) == net->num_classes(),
        train.directory + " has " + std::to_string(train.classes.size()) +
            " class folders, the default model " + std::to_string(net->num_classes()) + " classes");
  init_random(*net, options.seed);
  log_line("model: training resnet18 (width 16, " + std::to_string(net->num_parameters()) +
           " parameters) on " + std::to_string(train.samples.size()) + " images for " +
           std::to_string(options.epochs) + " epochs");
  const TrainStats stats =
      train_classifier(*net, train.samples, data::preprocess_config(net->preprocess()), options);
  save_safetensors(model.weights_path, net->state_dict(),
                   {{"recipe", recipe},
                    {"train_seconds", fixed(stats.seconds, 1)},
                    {"last_epoch_loss", fixed(stats.last_epoch_loss, 4)},
                    {"last_epoch_train_accuracy", fixed(stats.last_epoch_accuracy, 2)}});
  log_line("model: saved " + model.weights_path);
  model.trained = true;
  return model;
}

}  // namespace pk::cli
