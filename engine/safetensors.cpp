#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace pk {

namespace {

using nlohmann::json;

// The format's own limit; also keeps a corrupt length from parsing garbage.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

constexpr StoredDType kReadableDTypes[] = {StoredDType::F32, StoredDType::F16, StoredDType::BF16,
                                           StoredDType::F64, StoredDType::I64, StoredDType::I32};

std::string errno_text() { return std::strerror(errno); }

// Read-only POSIX mapping of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_checkpoint_error(path, "cannot open: " + errno_text());
    struct stat info {};
    const bool stat_ok = ::fstat(fd, &info) == 0;
    if (!stat_ok || !S_ISREG(info.st_mode)) {
      std::string why = stat_ok ? "not a regular file" : errno_text();
      ::close(fd);
      throw_checkpoint_error(path, "cannot read: " + why);
    }
    size_ = static_cast<uint64_t>(info.st_size);
    if (size_ > 0) {  // mmap rejects empty mappings; an empty file fails the size checks
      void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      std::string why = errno_text();
      ::close(fd);
      if (mapped == MAP_FAILED) throw_checkpoint_error(path, "cannot mmap: " + why);
      data_ = static_cast<const uint8_t*>(mapped);
    } else {
      ::close(fd);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// U8 is no checkpoint dtype (StoredDType): packptq writes it for quantized
// weight codes and reads it back as int64.
constexpr const char* kU8 = "U8";

struct TensorEntry {
  std::string name;
  std::string dtype_name;
  std::optional<StoredDType> dtype;  // unset: U8
  Shape shape;
  uint64_t begin, end;  // relative to the data section
};

struct Header {
  std::vector<TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section
};

std::optional<StoredDType> parse_dtype(const std::string& name) {
  for (StoredDType dtype : kReadableDTypes)
    if (name == stored_dtype_name(dtype)) return dtype;
  return std::nullopt;
}

std::string offsets_str(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

TensorEntry parse_entry(const std::string& path, const std::string& name, const json& info,
                        uint64_t data_size) {
  auto bad = [&](const std::string& what) {
    throw_checkpoint_error(path, "bad safetensors header: tensor '" + name + "': " + what);
  };
  if (!info.is_object()) bad("entry is not a JSON object");
  auto dtype_it = info.find("dtype"), shape_it = info.find("shape"),
       offsets_it = info.find("data_offsets");
  if (dtype_it == info.end() || !dtype_it->is_string()) bad("missing string field 'dtype'");
  if (shape_it == info.end() || !shape_it->is_array()) bad("missing array field 'shape'");
  if (offsets_it == info.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
    bad("'data_offsets' must be two non-negative integers");

  TensorEntry entry;
  entry.name = name;
  entry.dtype_name = dtype_it->get<std::string>();
  entry.dtype = parse_dtype(entry.dtype_name);
  if (!entry.dtype && entry.dtype_name != kU8)
    throw_checkpoint_error(path, "unsupported dtype '" + entry.dtype_name + "' of tensor '" +
                                     name + "' (supported: F32, F16, BF16, F64, I64, I32, U8)");

  // Byte size with overflow checks: a corrupt shape must not wrap around.
  // The product of the non-zero sizes is bounded too: an empty tensor's
  // strides are still computed from them.
  constexpr uint64_t kMaxExtent = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t bytes = entry.dtype ? stored_dtype_size(*entry.dtype) : 1, nonzero_extent = 1;
  for (const json& dim : *shape_it) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > kMaxExtent)
      bad("'shape' must hold non-negative integers, got " + shape_it->dump());
    uint64_t d = dim.get<uint64_t>();
    if (d != 0 && (bytes > std::numeric_limits<uint64_t>::max() / d ||
                   nonzero_extent > kMaxExtent / d))
      bad("shape " + shape_it->dump() + " is too large");
    bytes *= d;
    if (d != 0) nonzero_extent *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }

  entry.begin = (*offsets_it)[0].get<uint64_t>();
  entry.end = (*offsets_it)[1].get<uint64_t>();
  const std::string offsets = offsets_str(entry.begin, entry.end);
  if (entry.begin > entry.end) bad("data_offsets " + offsets + " end before they begin");
  if (entry.end > data_size)
    throw_checkpoint_error(path, "tensor '" + name + "': data_offsets " + offsets +
                                     " out of range: the data section holds only " +
                                     std::to_string(data_size) +
                                     " bytes (truncated file or corrupt header)");
  if (entry.end - entry.begin != bytes)
    bad(entry.dtype_name + " shape " + shape_str(entry.shape) +
        " needs " + std::to_string(bytes) + " bytes but data_offsets " + offsets + " span " +
        std::to_string(entry.end - entry.begin));
  return entry;
}

void check_no_overlap(const std::string& path, std::vector<TensorEntry> tensors) {
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  const TensorEntry* previous = nullptr;  // the non-empty tensor ending last so far
  for (const TensorEntry& t : tensors) {
    if (t.begin == t.end) continue;
    if (previous && t.begin < previous->end)
      throw_checkpoint_error(path, "bad safetensors header: tensors '" + previous->name +
                                       "' " + offsets_str(previous->begin, previous->end) +
                                       " and '" + t.name + "' " + offsets_str(t.begin, t.end) +
                                       " overlap");
    if (!previous || t.end > previous->end) previous = &t;
  }
}

Header parse_header(const std::string& path, const MappedFile& file) {
  if (file.size() < 8)
    throw_checkpoint_error(path, "truncated: " + std::to_string(file.size()) +
                                     " bytes, fewer than the 8-byte safetensors header length");
  uint64_t header_bytes;
  std::memcpy(&header_bytes, file.data(), 8);
  if (header_bytes > file.size() - 8)
    throw_checkpoint_error(path, "truncated or not safetensors: the header length " +
                                     std::to_string(header_bytes) + " exceeds the " +
                                     std::to_string(file.size() - 8) + " bytes after it");
  if (header_bytes > kMaxHeaderBytes)
    throw_checkpoint_error(path, "bad safetensors header: length " +
                                     std::to_string(header_bytes) + " exceeds the 100 MB limit");

  json root;
  const uint8_t* text = file.data() + 8;
  try {
    root = json::parse(text, text + header_bytes);
  } catch (const json::exception& e) {
    throw_checkpoint_error(path, std::string("bad safetensors header: not valid JSON (") +
                                     e.what() + ")");
  }
  if (!root.is_object()) throw_checkpoint_error(path, "bad safetensors header: not a JSON object");

  Header header;
  header.data_start = 8 + header_bytes;
  const uint64_t data_size = file.size() - header.data_start;
  for (const auto& [name, info] : root.items()) {
    if (name != "__metadata__") {
      header.tensors.push_back(parse_entry(path, name, info, data_size));
      continue;
    }
    if (!info.is_object())
      throw_checkpoint_error(path, "bad safetensors header: __metadata__ is not an object");
    for (const auto& [key, value] : info.items()) {
      if (!value.is_string())
        throw_checkpoint_error(path, "bad safetensors header: __metadata__ value of '" + key +
                                         "' is not a string");
      header.metadata[key] = value.get<std::string>();
    }
  }
  check_no_overlap(path, header.tensors);
  return header;
}

// A file being written under a temporary name; removed unless committed.
class PendingFile {
 public:
  explicit PendingFile(const std::string& path) : path_(path) {
    static std::atomic<unsigned> counter{0};
    temp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) throw_checkpoint_error(path, "cannot create '" + temp_ + "': " + errno_text());
  }
  ~PendingFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;

  void write(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      ssize_t n = ::write(fd_, p, bytes);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw_checkpoint_error(path_, "cannot write '" + temp_ + "': " + errno_text());
      p += n;
      bytes -= static_cast<size_t>(n);
    }
  }

  // Flushes to disk, then renames over `path` so readers see all or nothing.
  void commit() {
    if (::fsync(fd_) != 0)
      throw_checkpoint_error(path_, "cannot sync '" + temp_ + "': " + errno_text());
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0)
      throw_checkpoint_error(path_, "cannot close '" + temp_ + "': " + errno_text());
    if (::rename(temp_.c_str(), path_.c_str()) != 0)
      throw_checkpoint_error(path_, "cannot rename '" + temp_ + "' to it: " + errno_text());
    committed_ = true;
  }

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

TensorMap load_safetensors(const std::string& path) {
  MappedFile file(path);
  Header header = parse_header(path, file);
  const uint8_t* data = file.data() + header.data_start;
  TensorMap tensors;
  for (const TensorEntry& t : header.tensors) {
    if (t.dtype) {
      tensors[t.name] =
          decode_strided(data + t.begin, *t.dtype, t.shape, contiguous_strides(t.shape), 0);
      continue;
    }
    Tensor codes = Tensor::empty(t.shape, DType::I64);
    std::copy(data + t.begin, data + t.end, codes.data_i64());  // U8 -> int64
    tensors[t.name] = codes;
  }
  return tensors;
}

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  MappedFile file(path);
  return parse_header(path, file).metadata;
}

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::set<std::string>& as_u8) {
  for (const std::string& name : as_u8) {
    auto it = tensors.find(name);
    if (it == tensors.end())
      throw_checkpoint_error(path, "cannot save tensor '" + name + "' as U8: no such tensor");
    if (it->second.defined() && it->second.dtype() != DType::I64)
      throw_checkpoint_error(path, "cannot save tensor '" + name + "' as U8: it is " +
                                       it->second.describe() + ", not int64");
  }
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__")
      throw_checkpoint_error(path, "cannot save a tensor named '__metadata__' (reserved by the "
                                   "safetensors format)");
    if (!tensor.defined())
      throw_checkpoint_error(path, "cannot save tensor '" + name + "': undefined tensor");
    const bool u8 = as_u8.count(name) > 0;
    const uint64_t bytes = tensor.numel() * (u8 ? 1 : dtype_size(tensor.dtype()));
    json entry = json::object();
    entry["dtype"] = u8 ? kU8 : tensor.dtype() == DType::F32 ? "F32" : "I64";
    entry["shape"] = tensor.shape();
    entry["data_offsets"] = json::array({offset, offset + bytes});
    header[name] = std::move(entry);
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  const uint64_t header_bytes = text.size();

  PendingFile file(path);
  file.write(&header_bytes, sizeof header_bytes);
  file.write(text.data(), text.size());
  for (const auto& [name, tensor] : tensors) {
    Tensor host = tensor.to(Device::CPU);  // one tensor at a time: no second copy of the model
    if (as_u8.count(name) == 0) {
      file.write(host.raw_data(), host.numel() * dtype_size(host.dtype()));
      continue;
    }
    const int64_t* values = host.data_i64();
    std::vector<uint8_t> bytes(static_cast<size_t>(host.numel()));
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (values[i] < 0 || values[i] > 255)
        throw_checkpoint_error(path, "cannot save tensor '" + name + "' as U8: element " +
                                         std::to_string(i) + " is " + std::to_string(values[i]) +
                                         ", outside [0, 255]");
      bytes[i] = static_cast<uint8_t>(values[i]);
    }
    file.write(bytes.data(), bytes.size());
  }
  file.commit();
}

}  // namespace pk
