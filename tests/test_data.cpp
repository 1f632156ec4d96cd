// Data pipeline: decoding and transforms against PIL/torchvision outputs
// (tests/data, written by tests/data/make_pil_expected.py), resizing against
// a plain double-precision reference, ImageFolder scanning, calibration
// sampling, batch loading and bad inputs.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "tests/testing.h"
#include "tools/data/dataset.h"

using namespace pk;
using namespace pk::data;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = testing::fixtures_dir();
const fs::path kTestData = fs::path(PACKPTQ_SOURCE_DIR) / "tests" / "data";

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open " << path);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A source entry of the manifest: {"fixture": rel} or {"data": rel}.
std::string source_path(const nlohmann::json& source) {
  if (source.contains("fixture")) return (kFixtures / source["fixture"].get<std::string>()).string();
  return (kTestData / source["data"].get<std::string>()).string();
}

PreprocessConfig config_from_args(const nlohmann::json& args) {
  PreprocessConfig config;
  config.input_size = args["input_size"].get<int>();
  config.crop_pct = args["crop_pct"].get<double>();
  config.interpolation = parse_interpolation(args["interpolation"].get<std::string>());
  config.mean = args["mean"].get<std::array<float, 3>>();
  config.stddev = args["std"].get<std::array<float, 3>>();
  return config;
}

// Largest |difference| in units of one pixel level (1/255 of the range):
// uint8 values directly, normalized floats converted back with std.
double max_level_diff(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& expected) {
  REQUIRE(actual.size() == expected.size());
  int worst = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    worst = std::max(worst, std::abs(int(actual[i]) - int(expected[i])));
  return worst;
}

double max_level_diff(const std::vector<float>& actual, const std::vector<float>& expected,
                      const PreprocessConfig& config, int64_t plane) {
  REQUIRE(actual.size() == expected.size());
  double worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const int channel = static_cast<int>((i / plane) % 3);
    worst = std::max(worst, std::fabs(double(actual[i]) - expected[i]) *
                                config.stddev[channel] * 255.0);
  }
  return worst;
}

// ---- plain reference of PIL's antialiased resize, in double precision ----

double reference_filter(Interpolation interpolation, double x) {
  x = std::fabs(x);
  if (interpolation == Interpolation::Bilinear) return std::max(0.0, 1.0 - x);
  if (x < 1.0) return 1.5 * x * x * x - 2.5 * x * x + 1.0;
  if (x < 2.0) return -0.5 * x * x * x + 2.5 * x * x - 4.0 * x + 2.0;
  return 0.0;
}

// One axis: out[o] = sum_i in[i] w(i), the filter centred on output pixel o's
// centre and stretched by the shrink factor, normalized to sum 1; rounded
// and clipped to 8 bits after each pass as PIL does.
std::vector<uint8_t> reference_resample(const std::vector<uint8_t>& in, int lines, int in_size,
                                        int out_size, int step, int line_step,
                                        Interpolation interpolation) {
  const double scale = double(in_size) / out_size, stretch = std::max(scale, 1.0);
  const double support = (interpolation == Interpolation::Bilinear ? 1.0 : 2.0) * stretch;
  std::vector<uint8_t> out(static_cast<size_t>(lines) * out_size * 3);
  for (int line = 0; line < lines; ++line)
    for (int o = 0; o < out_size; ++o) {
      const double center = (o + 0.5) * scale;
      double sum[3] = {0, 0, 0}, total = 0;
      for (int i = 0; i < in_size; ++i) {
        if (std::fabs(i + 0.5 - center) >= support) continue;
        const double w = reference_filter(interpolation, (i + 0.5 - center) / stretch);
        total += w;
        for (int c = 0; c < 3; ++c)
          sum[c] += w * in[(static_cast<size_t>(line) * line_step + i * step) * 3 + c];
      }
      for (int c = 0; c < 3; ++c) {
        const double v = std::floor(sum[c] / total + 0.5);
        const size_t at = line_step == 1 ? (static_cast<size_t>(o) * lines + line)
                                         : (static_cast<size_t>(line) * out_size + o);
        out[at * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  return out;
}

Image reference_resize(const Image& in, int width, int height, Interpolation interpolation) {
  Image mid(width, in.height);
  // Rows: `lines` rows of `in.width` pixels, pixel step 1, row step width.
  mid.pixels = in.width == width ? in.pixels
                                 : reference_resample(in.pixels, in.height, in.width, width, 1,
                                                      in.width, interpolation);
  Image out(width, height);
  // Columns: pixel step = row length, column step 1 (output stored row-major).
  out.pixels = in.height == height ? mid.pixels
                                   : reference_resample(mid.pixels, width, in.height, height,
                                                        width, 1, interpolation);
  return out;
}

}  // namespace

TEST_CASE("decoding and transforms match PIL and torchvision outputs") {
  const nlohmann::json manifest =
      nlohmann::json::parse(read_bytes(kTestData / "manifest.json"));
  std::ostringstream report;
  double worst_overall = 0.0;
  for (const nlohmann::json& entry : manifest["cases"]) {
    const std::string name = entry["name"], op = entry["op"];
    const nlohmann::json& args = entry["args"];
    const std::vector<uint8_t> expected_bytes = read_bytes(kTestData / entry["file"].get<std::string>());
    std::vector<int64_t> shape = entry["shape"].get<std::vector<int64_t>>();
    INFO("case " << name);
    double diff = 0.0;
    if (entry["dtype"] == "u8") {
      const Image decoded = read_jpeg(source_path(entry["source"]));
      Image out;
      if (op == "decode") {
        out = decoded;
      } else if (op == "resize_shorter") {
        out = resize_shorter_side(decoded, args["size"],
                                  parse_interpolation(args["interpolation"]));
      } else if (op == "resize") {
        out = resize(decoded, args["width"], args["height"],
                     parse_interpolation(args["interpolation"]));
      } else if (op == "center_crop") {
        out = center_crop(decoded, args["height"], args["width"]);
      } else {
        FAIL("unknown uint8 op " << op);
      }
      REQUIRE(shape == std::vector<int64_t>{out.height, out.width, 3});
      diff = max_level_diff(out.pixels, expected_bytes);
    } else {
      REQUIRE(entry["dtype"] == "f32");
      const PreprocessConfig config = config_from_args(args);
      std::vector<float> expected(expected_bytes.size() / sizeof(float));
      std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());
      Tensor out;
      if (op == "timm_eval") {
        out = preprocess(read_jpeg(source_path(entry["source"])), config);
      } else {
        FAIL("unknown float op " << op);
      }
      REQUIRE(out.shape() == Shape(shape.begin(), shape.end()));
      diff = max_level_diff(out.to_vector(), expected, config,
                            int64_t(config.input_size) * config.input_size);
    }
    report << "  " << std::left << std::setw(34) << name << " max |diff| " << diff << " / 255\n";
    worst_overall = std::max(worst_overall, diff);
    CHECK_MESSAGE(diff <= 1.0, name << ": " << diff << " levels off PIL");
  }
  MESSAGE("max difference to PIL per case (pixel levels):\n"
          << report.str() << "  overall max " << worst_overall << " / 255");
}

TEST_CASE("the pipeline reproduces every fixture's golden input exactly") {
  for (const auto& dir : fs::directory_iterator(kFixtures / "models")) {
    CAPTURE(dir.path().filename().string());
    std::ifstream file(dir.path() / "config.json");
    nlohmann::json cfg = nlohmann::json::parse(file);
    nlohmann::json args = {{"input_size", cfg["input_size"]}, {"crop_pct", cfg["crop_pct"]},
                           {"interpolation", cfg["interpolation"]}, {"mean", cfg["mean"]},
                           {"std", cfg["std"]}};
    std::vector<Sample> samples;
    for (const auto& rel : cfg["golden_input_files"])
      samples.push_back({(kFixtures / rel.get<std::string>()).string(), 0});
    Tensor images = load_batch(samples, 0, samples.size(), config_from_args(args)).images;
    Tensor golden = load_safetensors((dir.path() / "golden.safetensors").string()).at("input");
    testing::expect_close(images, golden, 0.0, 0.0, "golden input");
  }
}

TEST_CASE("resize agrees with a plain double-precision reference at many scales") {
  Generator gen(3);
  struct Size { int w, h; };
  const std::pair<Size, Size> cases[] = {
      {{61, 47}, {7, 5}},    // strong shrink: wide antialias filters
      {{5, 9}, {37, 50}},    // strong enlarge
      {{200, 3}, {3, 11}},   // extreme aspect ratios
      {{33, 33}, {32, 34}},  // near-identity
      {{17, 40}, {17, 13}},  // vertical pass only
      {{40, 17}, {29, 17}},  // horizontal pass only
  };
  int worst = 0;
  for (const auto& size_case : cases)
    for (Interpolation interpolation : {Interpolation::Bilinear, Interpolation::Bicubic}) {
      const auto& from = size_case.first;
      const auto& to = size_case.second;
      Image in(from.w, from.h);
      for (uint8_t& p : in.pixels) p = static_cast<uint8_t>(gen.randint(256));
      const Image out = resize(in, to.w, to.h, interpolation);
      const Image ref = reference_resize(in, to.w, to.h, interpolation);
      REQUIRE(out.width == to.w);
      REQUIRE(out.height == to.h);
      const int diff = static_cast<int>(max_level_diff(out.pixels, ref.pixels));
      worst = std::max(worst, diff);
      // Fixed-point weights vs exact ones: at most one level per pass.
      CHECK_MESSAGE(diff <= 2, from.w << "x" << from.h << " -> " << to.w << "x" << to.h << " "
                                      << interpolation_name(interpolation) << ": " << diff);
    }
  MESSAGE("resize vs double reference: max " << worst << " levels");
}

TEST_CASE("resize to the same size is a copy, shorter-side sizes follow torchvision") {
  Image in(7, 4);
  for (size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = static_cast<uint8_t>(i * 37);
  CHECK(resize(in, 7, 4, Interpolation::Bicubic).pixels == in.pixels);
  // int(size * long / short): 5 * 7 / 4 = 8.75 -> 8; portrait keeps the width short.
  const Image landscape = resize_shorter_side(in, 5, Interpolation::Bilinear);
  CHECK(landscape.width == 8);
  CHECK(landscape.height == 5);
  const Image portrait = resize_shorter_side(Image(4, 7), 6, Interpolation::Bilinear);
  CHECK(portrait.width == 6);
  CHECK(portrait.height == 10);  // 6 * 7 / 4 = 10.5
  CHECK_THROWS_AS(resize(in, 0, 3, Interpolation::Bilinear), std::invalid_argument);
  CHECK_THROWS_AS(parse_interpolation("nearest"), std::invalid_argument);
}

TEST_CASE("center_crop: half-to-even offsets and torchvision's zero padding") {
  Image in(5, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) in.row(y)[x * 3 + c] = static_cast<uint8_t>(1 + y * 10 + x);
  auto value = [](const Image& im, int y, int x) { return int(im.row(y)[x * 3]); };
  // (4 - 1) / 2 = 1.5 -> 2 and (5 - 2) / 2 = 1.5 -> 2; (5 - 4) / 2 = 0.5 -> 0.
  const Image a = center_crop(in, 1, 2);
  CHECK(value(a, 0, 0) == 1 + 2 * 10 + 2);
  const Image b = center_crop(in, 4, 4);
  CHECK(value(b, 0, 0) == 1);
  // Larger than the image: padding (8 - 4) // 2 = 2 rows above, (7 - 5) // 2 = 1 column left.
  const Image c = center_crop(in, 8, 7);
  REQUIRE(c.width == 7);
  REQUIRE(c.height == 8);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 7; ++x) {
      const bool inside = y >= 2 && y < 6 && x >= 1 && x < 6;
      CHECK(value(c, y, x) == (inside ? 1 + (y - 2) * 10 + (x - 1) : 0));
    }
  // Padded along one axis only (one row above), the other still cropped at
  // round(1.5) = 2.
  const Image d = center_crop(in, 6, 2);
  CHECK(value(d, 0, 0) == 0);
  CHECK(value(d, 1, 0) == 1 + 2);
  CHECK(value(d, 4, 1) == 1 + 3 * 10 + 3);
  CHECK(value(d, 5, 1) == 0);
}

TEST_CASE("crop windows and horizontal flips") {
  Image in(5, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) in.row(y)[x * 3 + c] = static_cast<uint8_t>(1 + y * 10 + x + c);
  auto value = [](const Image& im, int y, int x, int c = 0) { return int(im.row(y)[x * 3 + c]); };
  const Image window = crop(in, 1, 2, 2, 3);
  REQUIRE(window.width == 3);
  REQUIRE(window.height == 2);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) CHECK(value(window, y, x) == 1 + (y + 1) * 10 + (x + 2));
  // Outside the image: zeros, as torchvision's F.crop pads.
  const Image beyond = crop(in, 3, 4, 2, 2);
  CHECK(value(beyond, 0, 0) == 1 + 3 * 10 + 4);
  CHECK(value(beyond, 0, 1) == 0);
  CHECK(value(beyond, 1, 0) == 0);

  const Image flipped = flip_horizontal(in);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) CHECK(value(flipped, y, x, c) == value(in, y, 4 - x, c));
  CHECK(flip_horizontal(flipped).pixels == in.pixels);
}

TEST_CASE("RandomResizedCrop windows: inside the image, area and aspect in range, seeded") {
  for (auto size : {std::pair{32, 32}, std::pair{224, 160}, std::pair{40, 300}}) {
    const int width = size.first, height = size.second;
    INFO(width << "x" << height);
    Generator gen(7);
    int fallbacks = 0;
    for (int draw = 0; draw < 500; ++draw) {
      const CropBox box = random_resized_crop_box(width, height, gen);
      REQUIRE(box.width > 0);
      REQUIRE(box.height > 0);
      CHECK(box.top >= 0);
      CHECK(box.left >= 0);
      CHECK(box.top + box.height <= height);
      CHECK(box.left + box.width <= width);
      const double share = double(box.width) * box.height / (double(width) * height);
      const double aspect = double(box.width) / box.height;
      // Rounding w and h to pixels moves both a little beyond the drawn ranges.
      CHECK(share >= 0.05);
      CHECK(aspect > 0.6);
      CHECK(aspect < 1.6);
      // 40x300 (ratio 0.13) rarely fits a window in ten draws: the centered
      // fallback keeps the whole width and height round(40 / (3/4)) = 53.
      fallbacks += box.top == 123 && box.left == 0 && box.height == 53 && box.width == 40;
    }
    if (width == 40) CHECK(fallbacks > 0);
  }
  Generator a(11), b(11), c(12);
  const CropBox first = random_resized_crop_box(64, 48, a);
  const CropBox again = random_resized_crop_box(64, 48, b);
  CHECK((first.top == again.top && first.left == again.left && first.height == again.height &&
         first.width == again.width));
  bool differs = false;
  for (int i = 0; i < 5 && !differs; ++i) {
    const CropBox x = random_resized_crop_box(64, 48, a), y = random_resized_crop_box(64, 48, c);
    differs = x.top != y.top || x.left != y.left || x.height != y.height || x.width != y.width;
  }
  CHECK(differs);
}

TEST_CASE("reference preprocessing: ImageNet eval transform, seeded augmented calibration") {
  const PreprocessConfig reference = reference_preprocess_config(224);
  CHECK(reference.scale_size() == 256);
  CHECK(reference.interpolation == Interpolation::Bilinear);
  CHECK(reference.mean == std::array<float, 3>{0.485f, 0.456f, 0.406f});
  CHECK(reference.stddev == std::array<float, 3>{0.229f, 0.224f, 0.225f});

  const ImageFolder train = scan_image_folder((kFixtures / "fashion32").string(), "train");
  const PreprocessConfig config = reference_preprocess_config(32);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Batch one = load_batch(train.samples, 10, 26, config, 5);
  omp_set_num_threads(3);
  const Batch three = load_batch(train.samples, 10, 26, config, 5);
  omp_set_num_threads(threads);
  const Batch other_seed = load_batch(train.samples, 10, 26, config, 6);
  const Batch plain = load_batch(train.samples, 10, 26, config);
  REQUIRE(one.images.shape() == Shape{16, 3, 32, 32});
  CHECK(one.images.to_vector() == three.images.to_vector());
  CHECK(one.images.to_vector() != other_seed.images.to_vector());
  CHECK(one.images.to_vector() != plain.images.to_vector());

  // Image 13 of the batch, by hand: its generator, window, resize, flip.
  const Sample& sample = train.samples[10 + 13];
  Generator gen(5 * 0x9E3779B97F4A7C15ull + 10 + 13 + 1);
  const Image image = read_jpeg(sample.path);
  const CropBox box = random_resized_crop_box(image.width, image.height, gen);
  Image window = resize(crop(image, box.top, box.left, box.height, box.width), 32, 32,
                        Interpolation::Bilinear);
  if (gen.uniform() < 0.5f) window = flip_horizontal(window);
  const std::vector<float> all = one.images.to_vector();
  const size_t plane = 32 * 32;
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < plane; i += 37) {
      const float expected =
          (static_cast<float>(window.pixels[i * 3 + c]) / 255.0f - config.mean[c]) /
          config.stddev[c];
      CHECK(all[(13 * 3 + c) * plane + i] == expected);
    }
}

TEST_CASE("ImageFolder scan of fixtures/fashion32") {
  const std::vector<std::string> expected_classes = {
      "00_tshirt_top", "01_trouser", "02_pullover", "03_dress", "04_coat",
      "05_sandal", "06_shirt", "07_sneaker", "08_bag", "09_ankle_boot"};
  const ImageFolder train = scan_image_folder((kFixtures / "fashion32").string(), "train");
  const ImageFolder val = scan_image_folder((kFixtures / "fashion32").string(), "val");
  CHECK(train.classes == expected_classes);
  CHECK(val.classes == expected_classes);
  REQUIRE(train.samples.size() == 2048);
  REQUIRE(val.samples.size() == 1000);
  std::map<int64_t, int> train_counts, val_counts;
  for (const Sample& s : train.samples) train_counts[s.label]++;
  for (const Sample& s : val.samples) val_counts[s.label]++;
  for (int64_t label = 0; label < 10; ++label) {
    CHECK(train_counts[label] == (label < 8 ? 205 : 204));
    CHECK(val_counts[label] == 100);
  }
  // Labels ascend and paths are sorted within each class; a sample's label
  // is its class folder.
  for (size_t i = 1; i < val.samples.size(); ++i) {
    const Sample &prev = val.samples[i - 1], &cur = val.samples[i];
    CHECK((prev.label < cur.label || (prev.label == cur.label && prev.path < cur.path)));
  }
  for (const Sample& s : val.samples)
    CHECK(fs::path(s.path).parent_path().filename() == val.classes[s.label]);
  CHECK(fs::path(val.samples[0].path).filename() == "000019.jpg");
}

TEST_CASE("ImageFolder follows torchvision's order and rejects bad folders") {
  TempDir dir;
  const std::vector<uint8_t> jpeg =
      read_bytes(kFixtures / "fashion32/val/00_tshirt_top/000019.jpg");
  const fs::path split = dir.path / "train";
  for (const char* rel : {"b/z.jpg", "b/a.JPEG", "b/sub/c.jpg", "b/sub/deeper/e.jpg",
                          "b/sub-x/d.jpg", "a/x.jpeg", "B/q.Jpg"})
    write_bytes(split / rel, jpeg);
  write_bytes(split / "a" / "notes.txt", {1, 2, 3});  // not an image: skipped

  const ImageFolder folder = scan_image_folder(dir.path.string(), "train");
  CHECK(folder.classes == std::vector<std::string>{"B", "a", "b"});  // byte order
  std::vector<std::string> names;
  for (const Sample& s : folder.samples)
    names.push_back(fs::relative(s.path, split).generic_string() + ":" + std::to_string(s.label));
  // sorted(os.walk()) orders folders by their path strings: a folder's own
  // files before its subfolders', and "b/sub-x" before "b/sub/deeper"
  // because '-' < '/'.
  CHECK(names == std::vector<std::string>{"B/q.Jpg:0", "a/x.jpeg:1", "b/a.JPEG:2", "b/z.jpg:2",
                                          "b/sub/c.jpg:2", "b/sub-x/d.jpg:2",
                                          "b/sub/deeper/e.jpg:2"});

  CHECK_THROWS_WITH_AS(scan_image_folder(dir.path.string(), "val"),
                       doctest::Contains("is not a directory"), std::runtime_error);
  fs::create_directories(dir.path / "empty_split");
  CHECK_THROWS_WITH_AS(scan_image_folder(dir.path.string(), "empty_split"),
                       doctest::Contains("no class folders"), std::runtime_error);
  fs::create_directories(split / "c_empty");
  CHECK_THROWS_WITH_AS(scan_image_folder(dir.path.string(), "train"),
                       doctest::Contains("c_empty"), std::runtime_error);
  fs::remove_all(split / "c_empty");
  write_bytes(split / "a" / "y.png", jpeg);
  CHECK_THROWS_WITH_AS(scan_image_folder(dir.path.string(), "train"),
                       doctest::Contains("only JPEG"), std::runtime_error);
}

TEST_CASE("corrupt, truncated and missing JPEG files fail with the file name") {
  TempDir dir;
  const std::vector<uint8_t> jpeg =
      read_bytes(kFixtures / "fashion32/val/00_tshirt_top/000019.jpg");
  std::vector<uint8_t> garbage(300);
  Generator gen(11);
  for (uint8_t& b : garbage) b = static_cast<uint8_t>(gen.randint(256));
  const fs::path garbage_path = dir.path / "garbage.jpg";
  const fs::path truncated_path = dir.path / "truncated.jpg";
  const fs::path empty_path = dir.path / "empty.jpg";
  write_bytes(garbage_path, garbage);
  write_bytes(truncated_path, std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2));
  write_bytes(empty_path, {});
  for (const fs::path& path : {garbage_path, truncated_path, empty_path, dir.path / "missing.jpg"})
    CHECK_THROWS_WITH_AS(read_jpeg(path.string()), doctest::Contains(path.string().c_str()),
                         std::runtime_error);

  const std::vector<Sample> samples = {
      {(kFixtures / "fashion32/val/01_trouser/000002.jpg").string(), 1},
      {garbage_path.string(), 0}};
  CHECK_THROWS_WITH_AS(load_batch(samples, 0, 2, PreprocessConfig{}),
                       doctest::Contains("garbage.jpg"), std::runtime_error);
}

TEST_CASE("a JPEG that declares more pixels than PIL's decompression-bomb limit is refused") {
  TempDir dir;
  std::vector<uint8_t> jpeg = read_bytes(kFixtures / "fashion32/val/00_tshirt_top/000019.jpg");
  // The baseline frame header (SOF0, FF C0): length, precision, then height
  // and width as big-endian 16-bit numbers. 65000 x 65000 is 4.2e9 pixels.
  size_t sof = 0;
  for (size_t i = 0; i + 1 < jpeg.size(); ++i)
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  REQUIRE(sof > 0);
  for (size_t field : {sof + 5, sof + 7}) {
    jpeg[field] = 65000 >> 8;
    jpeg[field + 1] = 65000 & 0xFF;
  }
  const fs::path path = dir.path / "bomb.jpg";
  write_bytes(path, jpeg);
  CHECK_THROWS_WITH_AS(read_jpeg(path.string()), doctest::Contains("decompression bomb"),
                       std::runtime_error);
}

TEST_CASE("load_batch: labels, per-image preprocessing, independent of thread count") {
  const ImageFolder val = scan_image_folder((kFixtures / "fashion32").string(), "val");
  PreprocessConfig config;
  config.input_size = 28;
  config.crop_pct = 0.875;
  config.interpolation = Interpolation::Bicubic;
  const size_t begin = 95, end = 112;  // across a class boundary

  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Batch one = load_batch(val.samples, begin, end, config);
  omp_set_num_threads(4);
  const Batch four = load_batch(val.samples, begin, end, config);
  omp_set_num_threads(threads);

  REQUIRE(one.images.shape() == Shape{17, 3, 28, 28});
  CHECK(one.images.to_vector() == four.images.to_vector());
  CHECK(one.labels.dtype() == DType::I64);
  const std::vector<int64_t> labels = one.labels.to_int64_vector();
  for (size_t i = begin; i < end; ++i) CHECK(labels[i - begin] == val.samples[i].label);
  CHECK(labels.front() == 0);
  CHECK(labels.back() == 1);

  const std::vector<float> single = preprocess(read_jpeg(val.samples[100].path), config).to_vector();
  const std::vector<float> all = one.images.to_vector();
  CHECK(std::vector<float>(all.begin() + 5 * single.size(), all.begin() + 6 * single.size()) ==
        single);
  CHECK_THROWS_AS(load_batch(val.samples, 5, 5, config), std::invalid_argument);
  CHECK_THROWS_AS(load_batch(val.samples, 990, 1001, config), std::invalid_argument);
}

TEST_CASE("calibration sampling: seeded, distinct, PyTorch's shuffled-loader order") {
  const ImageFolder train = scan_image_folder((kFixtures / "fashion32").string(), "train");
  const std::vector<Sample> a = sample_calibration(train.samples, 256, 0);
  const std::vector<Sample> b = sample_calibration(train.samples, 256, 0);
  const std::vector<Sample> c = sample_calibration(train.samples, 256, 1);
  REQUIRE(a.size() == 256);
  std::set<std::string> distinct;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].path == b[i].path);
    distinct.insert(a[i].path);
  }
  CHECK(distinct.size() == 256);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i].path == c[i].path;
  CHECK(same < 10);

  // First batch of 16 that PyTorch 1.13 yields from
  //   torch.manual_seed(seed)
  //   next(iter(DataLoader(list(range(n)), batch_size=16, shuffle=True)))
  // (the same with num_workers=2). Seed 2^40 + 7 checks that only its low
  // 32 bits count, as in torch.manual_seed.
  const std::vector<int64_t> torch_1005 = {1685, 1391, 101, 1592, 1501, 1646, 968, 1617,
                                           278,  1888, 1319, 841, 685, 89,   592, 1099};
  const std::vector<int64_t> torch_0 = {6, 7, 1, 4, 2, 0, 9, 8, 3, 5};
  const std::vector<int64_t> torch_large = {63, 38, 93, 94, 78, 82, 45, 81,
                                            56, 54, 6,  43, 99, 86, 4,  97};
  std::vector<int64_t> order = torch_loader_permutation(2048, 1005);
  CHECK(std::vector<int64_t>(order.begin(), order.begin() + 16) == torch_1005);
  CHECK(torch_loader_permutation(10, 0) == torch_0);
  order = torch_loader_permutation(100, (uint64_t{1} << 40) + 7);
  CHECK(std::vector<int64_t>(order.begin(), order.begin() + 16) == torch_large);

  std::vector<Sample> indices;
  for (int64_t i = 0; i < 10; ++i) indices.push_back({std::to_string(i), i});
  const std::vector<Sample> picked = sample_calibration(indices, 4, 0);
  for (int i = 0; i < 4; ++i) CHECK(picked[i].label == torch_0[i]);
  // A full draw is a permutation.
  std::set<int64_t> all;
  for (const Sample& s : sample_calibration(indices, 10, 7)) all.insert(s.label);
  CHECK(all.size() == 10);

  CHECK_THROWS_AS(sample_calibration(indices, 11, 0), std::invalid_argument);
  CHECK_THROWS_AS(sample_calibration(indices, 0, 0), std::invalid_argument);
}
