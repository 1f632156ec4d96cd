// Datasets in torchvision's ImageFolder layout, timm's evaluation transform,
// parallel batch loading and seeded calibration sampling.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "nets/net.h"
#include "tools/data/image.h"

namespace pk::data {

struct Sample {
  std::string path;
  int64_t label = 0;
};

struct ImageFolder {
  std::string directory;             // <dataset_path>/<split>
  std::vector<std::string> classes;  // classes[label] = class folder name
  std::vector<Sample> samples;       // class by class, in torchvision's file order
};

// Scans <dataset_path>/<split>/<class>/... exactly as torchvision's
// ImageFolder does: classes are the subfolder names in byte order (label =
// position); within a class, files of every nested folder, folders in path
// order and names sorted within each folder. Files ending in .jpg/.jpeg (any
// case) are images; other files are skipped, except other image formats
// torchvision would load (.png, .bmp, ...), which are an error rather than a
// silently different dataset. Throws std::runtime_error when the folder is
// missing, has no class folders, or a class has no image.
ImageFolder scan_image_folder(const std::string& dataset_path, const std::string& split);

// timm's evaluation preprocessing (the `pretrained_cfg` fields of a model;
// nets/net.h's Preprocess holds the same fields as read from config.json).
struct PreprocessConfig {
  int input_size = 224;
  double crop_pct = 0.875;
  Interpolation interpolation = Interpolation::Bilinear;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> stddev = {0.229f, 0.224f, 0.225f};

  // timm: floor(input_size / crop_pct), the shorter side before cropping.
  int scale_size() const;
};

// timm's eval transform on a decoded image: Resize(scale_size) of the shorter
// side, CenterCrop(input_size), ToTensor (x / 255) and Normalize ((x - mean)
// / std), all in float32 as torchvision computes them. Writes
// 3 * input_size * input_size floats, channel-major (CHW), to `out`.
void preprocess(const Image& image, const PreprocessConfig& config, float* out);
Tensor preprocess(const Image& image, const PreprocessConfig& config);  // [3, S, S]

struct Batch {
  Tensor images;  // float32 [B, 3, S, S]
  Tensor labels;  // int64 [B]
};

// The reference implementation's choice for every model (docs/METHOD.md
// section 10.3): ImageNet mean and std, Resize(floor(input_size / 0.875)) and
// CenterCrop(input_size), bilinear.
PreprocessConfig reference_preprocess_config(int input_size);

// A network's own preprocessing (its timm or BRECQ configuration), or with
// `reference` the reference implementation's at the network's input size.
PreprocessConfig preprocess_config(const Preprocess& preprocess, bool reference = false);

// torchvision RandomResizedCrop.get_params with scale (0.08, 1) and ratio
// (3/4, 4/3): up to ten draws of an area share and a log-uniform aspect
// ratio, the first window that fits taken at a uniform position; else the
// whole image clamped to the ratio range, centered.
struct CropBox {
  int top, left, height, width;
};
CropBox random_resized_crop_box(int width, int height, Generator& gen);

// The reference's calibration augmentation: RandomResizedCrop(input_size)
// (the window resized with config.interpolation), RandomHorizontalFlip(0.5),
// ToTensor and Normalize with config's mean and std.
void preprocess_augmented(const Image& image, const PreprocessConfig& config, Generator& gen,
                          float* out);

// Decodes and preprocesses samples[begin, end) on all OpenMP threads. Each
// image is independent, so the result does not depend on the thread count.
// With augment_seed, images are augmented (preprocess_augmented), sample k
// of `samples` drawing from its own generator seeded by (augment_seed, k).
// A failing image throws std::runtime_error naming the first such sample.
Batch load_batch(const std::vector<Sample>& samples, size_t begin, size_t end,
                 const PreprocessConfig& config,
                 std::optional<uint64_t> augment_seed = std::nullopt);

// The order in which a shuffled torch.utils.data.DataLoader over n samples
// yields them in its first epoch right after torch.manual_seed(seed), on the
// CPU generator (the same for every worker count and batch size). Exact for
// n < 2^32 / 20, where torch.randperm draws 32 bits per swap; above that it
// draws 64 bits and the orders part.
std::vector<int64_t> torch_loader_permutation(int64_t n, uint64_t seed);

// The first `count` samples of torch_loader_permutation(samples.size(), seed),
// in that order: the calibration images the reference implementation takes
// from its shuffled train loader right after seeding with the same seed.
std::vector<Sample> sample_calibration(const std::vector<Sample>& samples, int64_t count,
                                       uint64_t seed);

}  // namespace pk::data
