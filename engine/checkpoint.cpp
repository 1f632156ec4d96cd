#include "engine/checkpoint.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "engine/safetensors.h"
#include "engine/torch_checkpoint.h"

// Both formats store little-endian bytes, which we copy as they are.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "packptq's checkpoint readers assume a little-endian host"
#endif

namespace pk {

void throw_checkpoint_error(const std::string& path, const std::string& what) {
  throw std::runtime_error("checkpoint '" + path + "': " + what);
}

const char* stored_dtype_name(StoredDType dtype) {
  switch (dtype) {
    case StoredDType::F16: return "F16";
    case StoredDType::BF16: return "BF16";
    case StoredDType::F32: return "F32";
    case StoredDType::F64: return "F64";
    case StoredDType::I32: return "I32";
    case StoredDType::I64: return "I64";
  }
  return "?";
}

size_t stored_dtype_size(StoredDType dtype) {
  switch (dtype) {
    case StoredDType::F16:
    case StoredDType::BF16: return 2;
    case StoredDType::F32:
    case StoredDType::I32: return 4;
    case StoredDType::F64:
    case StoredDType::I64: return 8;
  }
  return 0;
}

DType loaded_dtype(StoredDType dtype) {
  return dtype == StoredDType::I32 || dtype == StoredDType::I64 ? DType::I64 : DType::F32;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, NaN (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else {
    // Zero or subnormal: mantissa * 2^-24, exact in float32.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bfloat16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;  // bfloat16 is float32's top half
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

namespace {

// Copies rows along the last dimension, stepping an odometer over the outer
// dimensions. Loading happens once per run, so this plain loop (memcpy speed
// for contiguous data, which is collapsed to one row) is not a hot path.
template <typename Src, typename Dst, typename Convert>
void gather(const uint8_t* src, Dst* dst, const Shape& shape, const Shape& strides,
            int64_t offset, Convert convert) {
  const int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  const int64_t inner = shape.empty() ? 1 : shape.back();
  const int64_t inner_stride = shape.empty() ? 1 : strides.back();
  std::vector<int64_t> index(shape.empty() ? 0 : shape.size() - 1, 0);
  int64_t base = offset;
  for (int64_t row = 0; row < numel / inner; ++row) {
    Dst* out = dst + row * inner;
    for (int64_t j = 0; j < inner; ++j) {
      Src value;
      std::memcpy(&value, src + (base + j * inner_stride) * sizeof(Src), sizeof(Src));
      out[j] = convert(value);
    }
    for (size_t d = index.size(); d-- > 0;) {
      base += strides[d];
      if (++index[d] < shape[d]) break;
      base -= strides[d] * shape[d];
      index[d] = 0;
    }
  }
}

}  // namespace

Tensor decode_strided(const uint8_t* src, StoredDType dtype, const Shape& shape,
                      const Shape& strides, int64_t offset) {
  Tensor out = Tensor::empty(shape, loaded_dtype(dtype), Device::CPU);
  const bool contiguous = strides == contiguous_strides(shape);
  const Shape flat_shape = {shape_numel(shape)}, flat_strides = {1};
  const Shape& s = contiguous ? flat_shape : shape;
  const Shape& st = contiguous ? flat_strides : strides;
  auto same = [](auto v) { return v; };
  switch (dtype) {
    case StoredDType::F16:
      gather<uint16_t>(src, out.data(), s, st, offset, half_to_float);
      break;
    case StoredDType::BF16:
      gather<uint16_t>(src, out.data(), s, st, offset, bfloat16_to_float);
      break;
    case StoredDType::F32:
      gather<float>(src, out.data(), s, st, offset, same);
      break;
    case StoredDType::F64:
      gather<double>(src, out.data(), s, st, offset,
                     [](double v) { return static_cast<float>(v); });
      break;
    case StoredDType::I32:
      gather<int32_t>(src, out.data_i64(), s, st, offset,
                      [](int32_t v) { return static_cast<int64_t>(v); });
      break;
    case StoredDType::I64:
      gather<int64_t>(src, out.data_i64(), s, st, offset, same);
      break;
  }
  return out;
}

TensorMap strip_module_prefix(TensorMap tensors) {
  static const std::string prefix = "module.";
  if (tensors.empty()) return tensors;
  for (const auto& [name, tensor] : tensors)
    if (name.compare(0, prefix.size(), prefix) != 0) return tensors;
  TensorMap stripped;
  for (auto& [name, tensor] : tensors) stripped.emplace(name.substr(prefix.size()), tensor);
  return stripped;
}

bool is_ema_key(const std::string& key) {
  size_t begin = 0;
  while (begin <= key.size()) {
    size_t end = key.find('_', begin);
    if (end == std::string::npos) end = key.size();
    if (key.compare(begin, end - begin, "ema") == 0) return true;
    begin = end + 1;
  }
  return false;
}

std::string StateDictEntry::describe() const {
  const std::string count =
      std::to_string(names.size()) + (names.size() == 1 ? " tensor" : " tensors");
  return (entry.empty() ? "the top level" : "'" + entry + "'") + " (" + count + ")";
}

namespace {

// A safetensors file: one state dict, read whole when opened.
class TensorMapCheckpoint : public Checkpoint {
 public:
  TensorMapCheckpoint(const std::string& path, TensorMap tensors)
      : Checkpoint(path), tensors_(std::move(tensors)) {
    StateDictEntry entry;
    for (const auto& [name, tensor] : tensors_) entry.names.push_back(name);
    state_dicts_.push_back(std::move(entry));
  }
  TensorMap load(size_t) const override { return tensors_; }

 private:
  TensorMap tensors_;
};

// POSIX tar: "ustar" at byte 257 of the first header.
bool is_tar_archive(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  char header[262] = {};
  file.read(header, sizeof header);
  return file.gcount() == sizeof header && std::memcmp(header + 257, "ustar", 5) == 0;
}

}  // namespace

std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    throw_checkpoint_error(path, "is a directory, not a checkpoint file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw_checkpoint_error(path, std::string("cannot open: ") + std::strerror(errno));
  unsigned char magic[9] = {};
  file.read(reinterpret_cast<char*>(magic), sizeof magic);
  const std::streamsize got = file.gcount();
  file.close();

  // Local file header, or the end-of-directory record of an empty archive.
  const bool zip = got >= 4 && magic[0] == 'P' && magic[1] == 'K' &&
                   ((magic[2] == 3 && magic[3] == 4) || (magic[2] == 5 && magic[3] == 6));
  if (zip) return open_torch_checkpoint(path);
  if (got == 9 && magic[8] == '{')
    return std::make_unique<TensorMapCheckpoint>(path, strip_module_prefix(load_safetensors(path)));
  // A pickle's PROTO opcode: torch.save's format before PyTorch 1.6.
  if (got >= 2 && magic[0] == 0x80) return open_legacy_torch_checkpoint(path);
  if (is_tar_archive(path))
    throw_checkpoint_error(path, "a tar archive, as torch.save wrote before PyTorch 0.4: not "
                                 "supported; re-save it with a later PyTorch");
  char hex[3 * sizeof magic + 1] = {};
  for (std::streamsize i = 0; i < got; ++i) std::snprintf(hex + 3 * i, 4, " %02x", magic[i]);
  throw_checkpoint_error(path, "not a PyTorch checkpoint (zip or legacy torch.save) and not a "
                               "safetensors file (first bytes:" +
                                   std::string(got ? hex : " none, empty file") + ")");
}

size_t default_state_dict(const std::vector<StateDictEntry>& state_dicts) {
  size_t best = 0;
  auto better = [](const StateDictEntry& a, const StateDictEntry& b) {
    if (a.ema != b.ema) return !a.ema;
    return a.names.size() > b.names.size();
  };
  for (size_t i = 1; i < state_dicts.size(); ++i)
    if (better(state_dicts[i], state_dicts[best])) best = i;
  return best;
}

TensorMap load_checkpoint(const std::string& path) {
  const std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(path);
  return checkpoint->load(default_state_dict(checkpoint->state_dicts()));
}

}  // namespace pk
