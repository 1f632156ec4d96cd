// 8-bit RGB images and the transforms of the evaluation pipeline, each one
// reproducing the Python reference bit for bit so that accuracy numbers
// match the PyTorch ones:
//   decode        PIL Image.open(...).convert('RGB')  (libjpeg, islow DCT,
//                 fancy upsampling)
//   resize        PIL Image.resize(size, BILINEAR | BICUBIC) for 8-bit images
//                 (antialiased separable convolution in 22-bit fixed point)
//   resize_shorter_side, center_crop, crop, flip_horizontal
//                 torchvision transforms.Resize(int), CenterCrop, F.crop and
//                 horizontal flips on PIL images
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pk::data {

// Interleaved RGB, row-major: pixel (y, x) channel c is at (y * width + x) * 3 + c.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int w, int h) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3, 0) {}
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * 3; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * 3; }
};

// Decodes a JPEG held in memory. Grayscale JPEGs are expanded to three equal
// channels and CMYK/YCCK JPEGs converted as PIL's convert('RGB') does.
// `source` names the data in error messages (usually the file path).
// Throws std::runtime_error on data that is not a complete JPEG.
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& source);
Image read_jpeg(const std::string& path);

enum class Interpolation { Bilinear, Bicubic };
// "bilinear" | "bicubic" (timm's and torchvision's names).
Interpolation parse_interpolation(const std::string& name);
const char* interpolation_name(Interpolation interpolation);

// PIL Image.resize((width, height), filter): a copy when the size is unchanged.
Image resize(const Image& image, int width, int height, Interpolation interpolation);

// torchvision Resize(size): the shorter side becomes `size`, the longer one
// int(size * long / short) (truncated, torchvision's rule).
Image resize_shorter_side(const Image& image, int size, Interpolation interpolation);

// torchvision CenterCrop((height, width)): offsets round((H - crop) / 2) with
// Python's round-half-to-even; a crop larger than the image is padded with
// zeros around it, as torchvision does.
Image center_crop(const Image& image, int height, int width);

// The height x width window at (top, left), zeros where it leaves the image
// (torchvision's F.crop).
Image crop(const Image& image, int top, int left, int height, int width);

// Mirrored left to right (torchvision's RandomHorizontalFlip when it flips).
Image flip_horizontal(const Image& image);

}  // namespace pk::data
