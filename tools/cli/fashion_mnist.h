// The built-in default of packptq: Fashion-MNIST from Debian's
// dataset-fashion-mnist package, converted once into a cached ImageFolder of
// 32x32 RGB JPEGs (the format of the shared fashion32 fixtures), and a small
// ResNet-18 trained on it with the engine's own autograd, cached too.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "nets/net.h"
#include "tools/data/dataset.h"

namespace pk::cli {

// Where dataset-fashion-mnist installs the idx files.
extern const char* const kFashionMnistSourceDir;

// Folder names of the ten classes, "00_tshirt_top" ... "09_ankle_boot": the
// two-digit prefix keeps ImageFolder's sorted order equal to the label.
const std::vector<std::string>& fashion_mnist_classes();

// One split of the original dataset, as stored in its idx files.
struct IdxImages {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count x rows x cols, row-major, 0 = background
  std::vector<uint8_t> labels;  // count, each in 0..9
  const uint8_t* image(int64_t i) const { return pixels.data() + i * rows * cols; }
};

// Reads <source_dir>/<split>-images-idx3-ubyte.gz and
// <split>-labels-idx1-ubyte.gz (split "train" or "t10k"). Throws
// std::runtime_error naming the file for a missing file (with the Debian
// package to install), a bad magic number, truncated data, a label outside
// 0..9, or image and label counts that differ.
IdxImages read_fashion_mnist(const std::string& source_dir, const std::string& split);

// A 28x28 gray image as the fixtures store it: PIL's bilinear resize to
// 32x32, gray replicated into three channels.
data::Image fashion_image_rgb32(const uint8_t* gray, int rows, int cols);

// Baseline JPEG with 4:2:0 chroma and the accurate integer DCT: what PIL's
// Image.save(path, quality=q) writes with its defaults.
std::vector<uint8_t> encode_jpeg(const data::Image& image, int quality);

struct FashionCacheSpec {
  std::string source_dir = kFashionMnistSourceDir;
  int64_t train_images = 0;  // the first images of the train split (0 = all)
  int64_t val_images = 0;    // the first images of the t10k split (0 = all)
};

// Makes `root` an ImageFolder of the spec's images,
// <root>/{train,val}/<class>/<index in its split, 6 digits>.jpg, unless it
// already holds one made from the same spec (recorded in
// <root>/conversion.json). The folder is built under a temporary name and
// renamed into place, so an interrupted run leaves no partial dataset; the
// temporary folders of interrupted runs are removed. Returns true when it
// converted.
bool prepare_fashion_mnist(const std::string& root, const FashionCacheSpec& spec);

// The default model: resnet18 at width 16 for 32x32 inputs and 10 classes,
// in the config.json format of the fixtures (resnet18_w16).
nlohmann::json default_model_config();

struct TrainOptions {
  int64_t epochs = 1;
  int64_t batch_size = 128;
  float learning_rate = 2e-3f;  // Adam, cosine-annealed to 0 over all steps
  float weight_decay = 0.0f;
  bool hflip = true;  // random horizontal flips
  uint64_t seed = 0;  // initialization, shuffling and flips
};

struct TrainStats {
  int64_t steps = 0;
  double first_loss = 0;           // loss of the first batch
  double last_epoch_loss = 0;      // mean loss over the last epoch
  double last_epoch_accuracy = 0;  // percent, training mode, over the last epoch
  double seconds = 0;
};

// Trains `net` in training mode (batch statistics in BatchNorm) on `samples`
// with Adam and cross entropy, shuffling every epoch, with a progress line
// showing loss and accuracy. Leaves the net in eval mode.
TrainStats train_classifier(Net& net, const std::vector<data::Sample>& samples,
                            const data::PreprocessConfig& preprocess, const TrainOptions& options);

struct DefaultModel {
  std::string config_path;   // <model_dir>/config.json
  std::string weights_path;  // <model_dir>/model.safetensors
  bool trained = false;      // trained by this call rather than loaded from the cache
};

// Returns the cached model of `model_dir` when its weights load into the
// default model and were trained with the same recipe (options and training
// images, recorded in the file's metadata); otherwise trains one from scratch
// on <dataset_root>/train and saves it (through a temporary file and a
// rename). `model_dir` is created when missing.
DefaultModel prepare_default_model(const std::string& model_dir, const std::string& dataset_root,
                                   const TrainOptions& options);

}  // namespace pk::cli
