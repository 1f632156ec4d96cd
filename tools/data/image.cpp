#include "tools/data/image.h"

#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

#include "engine/tensor.h"

namespace pk::data {

// ---- JPEG decoding ----

namespace {

struct TjDestroy {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDestroy>;

[[noreturn]] void throw_jpeg_error(tjhandle handle, const std::string& source) {
  throw std::runtime_error("decode_jpeg: " + source + ": " + tjGetErrorStr2(handle));
}

// PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts to RGB with
// r = (255 - k') - (255 - k') * c' / 255 in its rounded integer form, where c'
// and k' are the inverted samples: reproduce it on the raw samples.
void cmyk_to_rgb(const std::vector<uint8_t>& cmyk, Image& out) {
  const size_t n = static_cast<size_t>(out.width) * out.height;
  for (size_t i = 0; i < n; ++i) {
    const int not_k = cmyk[i * 4 + 3];  // 255 - inverted k
    for (int c = 0; c < 3; ++c) {
      const int ink = 255 - cmyk[i * 4 + c];
      const int t = ink * not_k + 128;               // PIL's MULDIV255: t / 255 rounded
      const int v = not_k - (((t >> 8) + t) >> 8);
      out.pixels[i * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0, 255));
    }
  }
}

}  // namespace

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& source) {
  TjHandle handle(tjInitDecompress());
  if (!handle) throw std::runtime_error("decode_jpeg: cannot create a TurboJPEG decoder");
  tjhandle tj = handle.get();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &width, &height,
                          &subsampling, &colorspace) != 0)
    throw_jpeg_error(tj, source);
  // PIL refuses a decompression bomb, more than twice Image.MAX_IMAGE_PIXELS,
  // before decoding it; so do we, before allocating its pixels: a file of a
  // few KB can declare 65000 x 65000.
  constexpr int64_t kMaxPixels = 2 * int64_t{89478485};
  if (static_cast<int64_t>(width) * height > kMaxPixels)
    throw std::runtime_error("decode_jpeg: " + source + ": " + std::to_string(width) + "x" +
                             std::to_string(height) + " pixels exceed PIL's limit of " +
                             std::to_string(kMaxPixels) + " (a decompression bomb)");

  // PIL decodes with libjpeg's defaults: accurate integer DCT (islow) and
  // fancy (smooth) chroma upsampling. TurboJPEG's defaults may differ, so
  // ask for them explicitly; only then do pixels match PIL exactly.
  const int flags = TJFLAG_ACCURATEDCT;
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  Image image(width, height);
  std::vector<uint8_t> cmyk_pixels(cmyk ? static_cast<size_t>(width) * height * 4 : 0);
  // Gray JPEGs decode straight to RGB: libjpeg replicates the gray channel,
  // the same as PIL's convert('RGB') of an "L" image.
  const int rc = cmyk ? tjDecompress2(tj, data, static_cast<unsigned long>(size), cmyk_pixels.data(),
                                      width, 0, height, TJPF_CMYK, flags)
                      : tjDecompress2(tj, data, static_cast<unsigned long>(size),
                                      image.pixels.data(), width, 0, height, TJPF_RGB, flags);
  if (rc != 0) {
    // libjpeg warnings (e.g. extraneous bytes before a marker) leave a fully
    // decoded image, and PIL accepts such files. Missing data does not: PIL
    // fails with "image file is truncated", and so do we.
    const std::string message = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) != TJERR_WARNING || message.find("Premature end") != std::string::npos)
      throw_jpeg_error(tj, source);
  }
  if (cmyk) cmyk_to_rgb(cmyk_pixels, image);
  return image;
}

Image read_jpeg(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("read_jpeg: cannot open " + path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                   std::istreambuf_iterator<char>());
  if (bytes.empty()) throw std::runtime_error("read_jpeg: " + path + " is empty");
  return decode_jpeg(bytes.data(), bytes.size(), path);
}

// ---- interpolation names ----

Interpolation parse_interpolation(const std::string& name) {
  if (name == "bilinear") return Interpolation::Bilinear;
  if (name == "bicubic") return Interpolation::Bicubic;
  throw std::invalid_argument("interpolation '" + name +
                              "' is not supported (use \"bilinear\" or \"bicubic\")");
}

const char* interpolation_name(Interpolation interpolation) {
  return interpolation == Interpolation::Bilinear ? "bilinear" : "bicubic";
}

// ---- resize (PIL's Resample.c algorithm for 8-bit images) ----

namespace {

// PIL keeps weights in fixed point with 22 fractional bits: 8 bits of pixel
// value and 2 bits of headroom for bicubic's overshoot fit in an int32.
constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear_filter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic_filter(double x) {  // Keys cubic with a = -0.5
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// The input taps of every output position along one axis.
struct AxisTaps {
  int max_taps = 0;             // stride of `weights`
  std::vector<int> first;       // first input index of output i
  std::vector<int> count;       // number of inputs of output i
  std::vector<int32_t> weights; // [out_size, max_taps], fixed point
};

// Each output pixel covers `scale` input pixels; when shrinking, the filter
// is stretched by the same factor so that every input contributes
// (antialiasing). The double-precision steps follow PIL's precompute_coeffs
// operation for operation, because a rounding difference there changes
// fixed-point weights and then whole pixel values.
AxisTaps axis_taps(int in_size, int out_size, Interpolation interpolation) {
  double (*filter)(double) =
      interpolation == Interpolation::Bilinear ? bilinear_filter : bicubic_filter;
  const double filter_support = interpolation == Interpolation::Bilinear ? 1.0 : 2.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter_support * filter_scale;
  const double inv_filter_scale = 1.0 / filter_scale;

  AxisTaps taps;
  taps.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<size_t>(out_size) * taps.max_taps, 0);
  std::vector<double> w(taps.max_taps);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // int() truncation as in PIL, then clamping to the image.
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    double sum = 0.0;
    for (int i = lo; i < hi; ++i) {
      w[i - lo] = filter((i - center + 0.5) * inv_filter_scale);
      sum += w[i - lo];
    }
    int32_t* fixed = &taps.weights[static_cast<size_t>(o) * taps.max_taps];
    for (int i = 0; i < hi - lo; ++i) {
      const double normalized = sum != 0.0 ? w[i] / sum : w[i];
      const double scaled = normalized * (1 << kPrecisionBits);
      fixed[i] = static_cast<int32_t>(normalized < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    taps.first[o] = lo;
    taps.count[o] = hi - lo;
  }
  return taps;
}

// Fixed-point accumulator (started at one half, for rounding) to a pixel.
inline uint8_t fixed_to_pixel(int32_t acc) {
  if (acc < 0) return 0;
  return static_cast<uint8_t>(std::min(acc >> kPrecisionBits, 255));
}

Image resample_horizontal(const Image& in, int out_width, Interpolation interpolation) {
  const AxisTaps taps = axis_taps(in.width, out_width, interpolation);
  Image out(out_width, in.height);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* src = in.row(y);
    uint8_t* dst = out.row(y);
    for (int x = 0; x < out_width; ++x) {
      const int32_t* w = &taps.weights[static_cast<size_t>(x) * taps.max_taps];
      const uint8_t* s = src + static_cast<size_t>(taps.first[x]) * 3;
      int32_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1),
                        1 << (kPrecisionBits - 1)};
      for (int t = 0; t < taps.count[x]; ++t)
        for (int c = 0; c < 3; ++c) acc[c] += s[t * 3 + c] * w[t];
      for (int c = 0; c < 3; ++c) dst[x * 3 + c] = fixed_to_pixel(acc[c]);
    }
  }
  return out;
}

Image resample_vertical(const Image& in, int out_height, Interpolation interpolation) {
  const AxisTaps taps = axis_taps(in.height, out_height, interpolation);
  Image out(in.width, out_height);
  const size_t row_values = static_cast<size_t>(in.width) * 3;
  std::vector<int32_t> acc(row_values);
  for (int y = 0; y < out_height; ++y) {
    const int32_t* w = &taps.weights[static_cast<size_t>(y) * taps.max_taps];
    // Taps in the outer loop so the inner loop runs over a whole row (and
    // vectorizes); integer sums make the order irrelevant to the result.
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int t = 0; t < taps.count[y]; ++t) {
      const uint8_t* src = in.row(taps.first[y] + t);
      const int32_t weight = w[t];
      for (size_t i = 0; i < row_values; ++i) acc[i] += src[i] * weight;
    }
    uint8_t* dst = out.row(y);
    for (size_t i = 0; i < row_values; ++i) dst[i] = fixed_to_pixel(acc[i]);
  }
  return out;
}

}  // namespace

Image resize(const Image& image, int width, int height, Interpolation interpolation) {
  check(width > 0 && height > 0 && image.width > 0 && image.height > 0,
        "resize: cannot resize " + std::to_string(image.width) + "x" +
            std::to_string(image.height) + " to " + std::to_string(width) + "x" +
            std::to_string(height));
  // PIL: horizontal pass first, then vertical; an axis whose size does not
  // change is skipped (its taps would be the identity anyway).
  if (width == image.width && height == image.height) return image;
  if (height == image.height) return resample_horizontal(image, width, interpolation);
  if (width == image.width) return resample_vertical(image, height, interpolation);
  return resample_vertical(resample_horizontal(image, width, interpolation), height,
                           interpolation);
}

Image resize_shorter_side(const Image& image, int size, Interpolation interpolation) {
  const int short_side = std::min(image.width, image.height);
  const int long_side = std::max(image.width, image.height);
  check(size > 0 && short_side > 0, "resize_shorter_side: cannot resize " +
                                        std::to_string(image.width) + "x" +
                                        std::to_string(image.height) + " to shorter side " +
                                        std::to_string(size));
  // Python's int(size * long / short): a correctly rounded double, truncated.
  const int new_long = static_cast<int>(static_cast<double>(size) * long_side / short_side);
  return image.width <= image.height ? resize(image, size, new_long, interpolation)
                                     : resize(image, new_long, size, interpolation);
}

namespace {

// Offset of a centered crop of `crop` out of `size` pixels. Python's
// round((size - crop) / 2.0) rounds halves to even; a negative offset means
// zero padding of (crop - size) // 2 before the image.
int center_offset(int size, int crop) {
  const int excess = size - crop;
  if (excess < 0) return -((-excess) / 2);
  const int half = excess / 2;
  if (excess % 2 == 0) return half;
  return half % 2 == 0 ? half : half + 1;
}

}  // namespace

Image crop(const Image& image, int top, int left, int height, int width) {
  check(height > 0 && width > 0, "crop: crop size " + std::to_string(height) + "x" +
                                     std::to_string(width) + " must be positive");
  Image out(width, height);  // zero-filled: padding where the crop leaves the image
  const int x_begin = std::max(0, -left), x_end = std::min(width, image.width - left);
  for (int y = 0; y < height; ++y) {
    const int sy = y + top;
    if (sy < 0 || sy >= image.height || x_end <= x_begin) continue;
    std::copy(image.row(sy) + static_cast<size_t>(x_begin + left) * 3,
              image.row(sy) + static_cast<size_t>(x_end + left) * 3,
              out.row(y) + static_cast<size_t>(x_begin) * 3);
  }
  return out;
}

Image center_crop(const Image& image, int height, int width) {
  check(height > 0 && width > 0, "center_crop: crop size " + std::to_string(height) + "x" +
                                     std::to_string(width) + " must be positive");
  return crop(image, center_offset(image.height, height), center_offset(image.width, width), height,
              width);
}

Image flip_horizontal(const Image& image) {
  Image out(image.width, image.height);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      std::copy_n(image.row(y) + static_cast<size_t>(image.width - 1 - x) * 3, 3,
                  out.row(y) + static_cast<size_t>(x) * 3);
  return out;
}

}  // namespace pk::data
