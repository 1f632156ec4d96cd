#include "tools/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <stdexcept>

#include "engine/rng.h"

namespace pk::data {

namespace fs = std::filesystem;

// ---- ImageFolder ----

namespace {

std::string lowercase_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

bool is_jpeg(const std::string& ext) { return ext == ".jpg" || ext == ".jpeg"; }

// torchvision's IMG_EXTENSIONS that we cannot decode.
bool is_other_image(const std::string& ext) {
  static const char* const kOthers[] = {".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  return std::find(std::begin(kOthers), std::end(kOthers), ext) != std::end(kOthers);
}

// torchvision: for root, _, fnames in sorted(os.walk(class_dir, followlinks=True)):
//                for fname in sorted(fnames): ...
// std::string compares bytes as unsigned char, which is Python's code point
// order for UTF-8 names.
std::vector<std::string> class_images(const fs::path& class_dir) {
  std::vector<std::string> directories = {class_dir.string()};
  for (const auto& entry :
       fs::recursive_directory_iterator(class_dir, fs::directory_options::follow_directory_symlink))
    if (entry.is_directory()) directories.push_back(entry.path().string());
  std::sort(directories.begin(), directories.end());

  std::vector<std::string> images;
  for (const std::string& directory : directories) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(directory))
      if (!entry.is_directory()) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const fs::path path = fs::path(directory) / name;
      const std::string ext = lowercase_extension(path);
      if (is_other_image(ext))
        throw std::runtime_error("ImageFolder: " + path.string() +
                                 ": only JPEG images (.jpg, .jpeg) are supported");
      if (is_jpeg(ext)) images.push_back(path.string());
    }
  }
  return images;
}

}  // namespace

ImageFolder scan_image_folder(const std::string& dataset_path, const std::string& split) {
  const fs::path directory = fs::path(dataset_path) / split;
  std::error_code error;
  if (!fs::is_directory(directory, error))
    throw std::runtime_error("ImageFolder: " + directory.string() +
                             " is not a directory (expected <dataset_path>/" + split +
                             "/<class>/<image>.jpg)");
  ImageFolder folder;
  folder.directory = directory.string();
  for (const auto& entry : fs::directory_iterator(directory))
    if (entry.is_directory()) folder.classes.push_back(entry.path().filename().string());
  std::sort(folder.classes.begin(), folder.classes.end());
  if (folder.classes.empty())
    throw std::runtime_error("ImageFolder: " + folder.directory +
                             " has no class folders (expected <class>/<image>.jpg inside)");

  std::string empty_classes;
  for (size_t label = 0; label < folder.classes.size(); ++label) {
    const std::vector<std::string> images = class_images(directory / folder.classes[label]);
    if (images.empty()) empty_classes += (empty_classes.empty() ? "" : ", ") + folder.classes[label];
    for (const std::string& path : images)
      folder.samples.push_back({path, static_cast<int64_t>(label)});
  }
  if (!empty_classes.empty())
    throw std::runtime_error("ImageFolder: no JPEG image in the class folder(s) " + empty_classes +
                             " of " + folder.directory);
  return folder;
}

// ---- preprocessing ----

int PreprocessConfig::scale_size() const {
  return static_cast<int>(std::floor(input_size / crop_pct));
}

namespace {

// ToTensor then Normalize of a size x size image into CHW floats, with the
// same float32 operations (divide, subtract, divide), so values match
// torchvision bit for bit.
void normalize_into(const Image& image, const PreprocessConfig& config, float* out) {
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  for (int c = 0; c < 3; ++c) {
    const float mean = config.mean[c], stddev = config.stddev[c];
    float* dst = out + c * plane;
    for (size_t i = 0; i < plane; ++i)
      dst[i] = (static_cast<float>(image.pixels[i * 3 + c]) / 255.0f - mean) / stddev;
  }
}

}  // namespace

void preprocess(const Image& image, const PreprocessConfig& config, float* out) {
  const int size = config.input_size;
  const Image resized = resize_shorter_side(image, config.scale_size(), config.interpolation);
  normalize_into(center_crop(resized, size, size), config, out);
}

PreprocessConfig reference_preprocess_config(int input_size) {
  PreprocessConfig config;  // ImageNet mean and std
  config.input_size = input_size;
  config.crop_pct = 0.875;
  config.interpolation = Interpolation::Bilinear;
  return config;
}

PreprocessConfig preprocess_config(const Preprocess& preprocess, bool reference) {
  if (reference) return reference_preprocess_config(static_cast<int>(preprocess.input_size));
  PreprocessConfig config;
  config.input_size = static_cast<int>(preprocess.input_size);
  config.crop_pct = preprocess.crop_pct;
  config.interpolation = parse_interpolation(preprocess.interpolation);
  for (int c = 0; c < 3; ++c) {
    config.mean[c] = preprocess.mean[c];
    config.stddev[c] = preprocess.std[c];
  }
  return config;
}

CropBox random_resized_crop_box(int width, int height, Generator& gen) {
  constexpr double kMinRatio = 3.0 / 4.0, kMaxRatio = 4.0 / 3.0;
  const float log_min = static_cast<float>(std::log(kMinRatio));
  const float log_max = static_cast<float>(std::log(kMaxRatio));
  const double area = static_cast<double>(width) * height;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * gen.uniform(0.08f, 1.0f);
    const double aspect = std::exp(gen.uniform(log_min, log_max));
    // Python's round: half to even.
    const int w = static_cast<int>(std::nearbyint(std::sqrt(target_area * aspect)));
    const int h = static_cast<int>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int top = static_cast<int>(gen.randint(height - h + 1));
      const int left = static_cast<int>(gen.randint(width - w + 1));
      return {top, left, h, w};
    }
  }
  const double ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (ratio < kMinRatio) {
    h = static_cast<int>(std::nearbyint(w / kMinRatio));
  } else if (ratio > kMaxRatio) {
    w = static_cast<int>(std::nearbyint(h * kMaxRatio));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void preprocess_augmented(const Image& image, const PreprocessConfig& config, Generator& gen,
                          float* out) {
  const CropBox box = random_resized_crop_box(image.width, image.height, gen);
  Image window = resize(crop(image, box.top, box.left, box.height, box.width), config.input_size,
                        config.input_size, config.interpolation);
  if (gen.uniform() < 0.5f) window = flip_horizontal(window);
  normalize_into(window, config, out);
}

Tensor preprocess(const Image& image, const PreprocessConfig& config) {
  Tensor out = Tensor::empty({3, config.input_size, config.input_size});
  preprocess(image, config, out.data());
  return out;
}

// ---- batches ----

Batch load_batch(const std::vector<Sample>& samples, size_t begin, size_t end,
                 const PreprocessConfig& config, std::optional<uint64_t> augment_seed) {
  check(begin < end && end <= samples.size(),
        "load_batch: range [" + std::to_string(begin) + ", " + std::to_string(end) +
            ") is empty or outside the " + std::to_string(samples.size()) + " samples");
  const int64_t count = static_cast<int64_t>(end - begin);
  const int64_t size = config.input_size;
  Batch batch;
  batch.images = Tensor::empty({count, 3, size, size});
  float* images = batch.images.data();
  std::vector<int64_t> labels(count);
  std::vector<std::string> errors(count);
  // Exceptions must not leave an OpenMP region: collect them per image.
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < count; ++i) {
    const Sample& sample = samples[begin + i];
    labels[i] = sample.label;
    try {
      float* out = images + i * 3 * size * size;
      if (augment_seed) {
        // Its own stream per sample: the same crops whatever the thread count.
        Generator gen(*augment_seed * 0x9E3779B97F4A7C15ull + begin + i + 1);
        preprocess_augmented(read_jpeg(sample.path), config, gen, out);
      } else {
        preprocess(read_jpeg(sample.path), config, out);
      }
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (const std::string& error : errors)
    if (!error.empty()) throw std::runtime_error("load_batch: " + error);
  batch.labels = Tensor::from_int64(labels, {count});
  return batch;
}

// ---- calibration sampling ----

namespace {

// An int64 random_() of PyTorch's CPU generator: two 32-bit mt19937 outputs,
// high word first, reduced to the non-negative int64 range.
uint64_t torch_random_int64(std::mt19937& engine) {
  const uint64_t high = engine();
  const uint64_t low = engine();
  return ((high << 32) | low) & ((uint64_t{1} << 63) - 1);
}

}  // namespace

std::vector<int64_t> torch_loader_permutation(int64_t n, uint64_t seed) {
  // torch.manual_seed keeps the seed's low 32 bits for mt19937.
  std::mt19937 global(static_cast<uint32_t>(seed));
  torch_random_int64(global);  // the loader's iterator draws its workers' base seed first,
  const uint64_t sampler_seed = torch_random_int64(global);  // then RandomSampler its own seed
  std::mt19937 sampler(static_cast<uint32_t>(sampler_seed));
  // torch.randperm on the CPU: for i from 0, swap i with i + random() % (n - i).
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = 0; i + 1 < n; ++i)
    std::swap(order[i], order[i + static_cast<int64_t>(sampler() % static_cast<uint64_t>(n - i))]);
  return order;
}

std::vector<Sample> sample_calibration(const std::vector<Sample>& samples, int64_t count,
                                       uint64_t seed) {
  const int64_t n = static_cast<int64_t>(samples.size());
  check(count > 0 && count <= n, "sample_calibration: cannot draw " + std::to_string(count) +
                                     " distinct images from " + std::to_string(n));
  const std::vector<int64_t> order = torch_loader_permutation(n, seed);
  std::vector<Sample> chosen;
  chosen.reserve(count);
  for (int64_t i = 0; i < count; ++i) chosen.push_back(samples[order[i]]);
  return chosen;
}

}  // namespace pk::data
