// Checkpoint formats: the fixtures' model.pth and model.safetensors against
// each other, safetensors round trips and hand-written files (F16, BF16),
// hand-made torch.save archives (strided views, wrappers, every storage
// type), a legacy torch.save file written by PyTorch and hand-made ones,
// training scripts' checkpoints written by PyTorch and the state dicts
// found in them, pickles that would run a command if executed, and the
// errors a bad file must give.
#include <doctest/doctest.h>
#include <zip.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "engine/torch_checkpoint.h"
#include "tests/testing.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kModelsDir = (testing::fixtures_dir() / "models").string();
const std::string kTestData = std::string(PACKPTQ_SOURCE_DIR) + "/tests/data";

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot read " << path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE_MESSAGE(out.good(), "cannot write " << path);
}

template <typename T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string le64(uint64_t v) { return raw(std::vector<uint64_t>{v}); }

// A safetensors file written by hand: length, header text as given, data.
void write_safetensors_raw(const std::string& path, const std::string& header,
                           const std::string& data) {
  write_bytes(path, le64(header.size()) + header + data);
}

// Runs `load` and checks that it throws std::runtime_error whose message
// contains every one of `words`.
template <typename Load>
void expect_error(Load&& load, std::initializer_list<std::string> words) {
  std::string message;
  try {
    load();
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  REQUIRE_MESSAGE(!message.empty(), "no std::runtime_error thrown");
  for (const std::string& word : words)
    CHECK_MESSAGE(message.find(word) != std::string::npos,
                  "message \"" << message << "\" lacks \"" << word << "\"");
}

void expect_identical(const TensorMap& actual, const TensorMap& expected) {
  REQUIRE(actual.size() == expected.size());
  auto a = actual.begin();
  for (auto e = expected.begin(); e != expected.end(); ++e, ++a) {
    INFO("tensor " << e->first);
    REQUIRE(a->first == e->first);
    REQUIRE(a->second.dtype() == e->second.dtype());
    REQUIRE(a->second.shape() == e->second.shape());
    CHECK(std::memcmp(a->second.raw_data(), e->second.raw_data(),
                      e->second.numel() * dtype_size(e->second.dtype())) == 0);
  }
}

std::vector<std::string> keys(const TensorMap& tensors) {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors) out.push_back(name);
  return out;
}

// ---- hand-made torch.save archives ----

// Emits pickle protocol 2 opcodes, as torch.save does; `legacy` gives
// persistent ids the legacy format's sixth entry (no view: None).
class PickleWriter {
 public:
  explicit PickleWriter(bool legacy = false) : legacy_(legacy) { bytes_ = "\x80\x02"; }
  PickleWriter& op(char opcode) { bytes_ += opcode; return *this; }
  PickleWriter& mark() { return op('('); }
  PickleWriter& text(const std::string& bytes) {  // an opcode's argument, as it is
    bytes_ += bytes;
    return *this;
  }
  PickleWriter& str(const std::string& s) {
    op('X');
    bytes_ += raw(std::vector<uint32_t>{static_cast<uint32_t>(s.size())}) + s;
    return *this;
  }
  PickleWriter& short_str(const std::string& s) {
    op('\x8c');
    bytes_ += static_cast<char>(s.size());
    bytes_ += s;
    return *this;
  }
  PickleWriter& integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      bytes_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      op('M');
      bytes_ += raw(std::vector<uint16_t>{static_cast<uint16_t>(v)});
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      bytes_ += raw(std::vector<int32_t>{static_cast<int32_t>(v)});
    } else {
      op('\x8a');
      bytes_ += '\x08';
      bytes_ += raw(std::vector<int64_t>{v});
    }
    return *this;
  }
  PickleWriter& real(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof v);
    op('G');
    for (int i = 7; i >= 0; --i) bytes_ += static_cast<char>(bits >> (8 * i));
    return *this;
  }
  PickleWriter& global(const std::string& module, const std::string& name) {
    op('c');
    bytes_ += module + "\n" + name + "\n";
    return *this;
  }
  PickleWriter& int_tuple(const Shape& values) {
    mark();
    for (int64_t v : values) integer(v);
    return op('t');
  }
  PickleWriter& ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
  // _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset,
  //                    size, stride, False, OrderedDict())
  PickleWriter& tensor(const std::string& storage_type, const std::string& key, int64_t numel,
                       int64_t offset, const Shape& size, const Shape& stride) {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    mark().str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel);
    if (legacy_) op('N');
    op('t').op('Q');
    integer(offset).int_tuple(size).int_tuple(stride).op('\x89').ordered_dict();
    return op('t').op('R');
  }
  std::string finish() { return bytes_ + "."; }
  std::string unfinished() const { return bytes_; }

 private:
  bool legacy_;
  std::string bytes_;
};

using Records = std::vector<std::pair<std::string, std::string>>;

// A zip archive of stored (uncompressed) records, like torch.save writes.
void write_zip(const std::string& path, const Records& records) {
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  REQUIRE_MESSAGE(archive, "zip_open error " << error);
  for (const auto& [name, data] : records) {
    zip_source_t* source = zip_source_buffer(archive, data.data(), data.size(), 0);
    REQUIRE(source);
    zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_OVERWRITE);
    REQUIRE(index >= 0);
    REQUIRE(zip_set_file_compression(archive, index, ZIP_CM_STORE, 0) == 0);
  }
  REQUIRE(zip_close(archive) == 0);
}

// A torch.save-like archive: data.pkl, storages, version.
void write_torch_archive(const std::string& path, const std::string& pickle,
                         const Records& storages = {}) {
  Records records = {{"archive/data.pkl", pickle}, {"archive/version", "3\n"}};
  for (const auto& [key, bytes] : storages) records.emplace_back("archive/data/" + key, bytes);
  write_zip(path, records);
}

const std::vector<float> kStorage0 = {0.0f, 1.5f, 3.0f, 4.5f, 6.0f, 7.5f, 9.0f, 10.5f};

// A legacy torch.save stream: magic number, protocol version, sys_info, the
// object's pickle, the storage key list, then each storage as an int64
// element count and its bytes.
struct LegacyStorage {
  std::string key;
  int64_t numel;
  std::string bytes;
};
std::string legacy_file(const std::string& object_pickle, const std::vector<LegacyStorage>& storages,
                        bool little_endian = true) {
  PickleWriter info;
  info.op('}').mark().str("protocol_version").integer(1001).str("little_endian");
  info.op(little_endian ? '\x88' : '\x89').str("type_sizes").op('}').op('u');
  PickleWriter key_list;
  key_list.op(']').mark();
  for (const LegacyStorage& s : storages) key_list.str(s.key);
  key_list.op('e');
  std::string out = std::string("\x80\x02\x8a\x0al\xfc\x9c" "F\xf9 j\xa8P\x19.", 15);
  out += std::string("\x80\x02M\xe9\x03.", 6) + info.finish() + object_pickle + key_list.finish();
  for (const LegacyStorage& s : storages) out += le64(static_cast<uint64_t>(s.numel)) + s.bytes;
  return out;
}

}  // namespace

TEST_CASE("fixtures: model.pth and model.safetensors hold identical tensors") {
  std::vector<std::string> models;
  for (const auto& entry : fs::directory_iterator(kModelsDir))
    if (entry.is_directory()) models.push_back(entry.path().filename());
  std::sort(models.begin(), models.end());
  // The fixtures README lists 8 models, covering every wrapper kind.
  REQUIRE(models.size() >= 8);

  for (const std::string& model : models) {
    INFO("model " << model);
    const std::string dir = kModelsDir + "/" + model;
    const TensorMap from_pth = load_checkpoint(dir + "/model.pth");
    const TensorMap from_safetensors = load_checkpoint(dir + "/model.safetensors");
    CHECK(from_pth.size() > 10);
    expect_identical(from_pth, from_safetensors);
    // The format readers directly give the same (no module. prefixes here).
    expect_identical(load_torch_checkpoint(dir + "/model.pth"), from_safetensors);
    expect_identical(load_safetensors(dir + "/model.safetensors"), from_safetensors);
    CHECK(load_safetensors_metadata(dir + "/model.safetensors").at("format") == "pt");

    // Wrapper entries are not tensors and must not leak into the state dict.
    CHECK(from_pth.count("epoch") == 0);
    CHECK(from_pth.count("best_acc1") == 0);
    // BatchNorm nets carry int64 num_batches_tracked buffers.
    int64_t int64_tensors = 0;
    for (const auto& [name, t] : from_pth)
      if (t.dtype() == DType::I64) {
        ++int64_tensors;
        CHECK(name.size() > 19);
        CHECK(name.compare(name.size() - 19, 19, "num_batches_tracked") == 0);
        CHECK(t.dim() == 0);
      }
    if (model == "resnet18_w16" || model == "mobilenetv2_w050" || model == "regnetx_200m")
      CHECK(int64_tensors > 0);
  }
}

TEST_CASE("fixtures: golden.safetensors holds input and logits") {
  const TensorMap golden = load_safetensors(kModelsDir + "/resnet18_w16/golden.safetensors");
  CHECK(keys(golden) == std::vector<std::string>{"input", "logits"});
  CHECK(golden.at("input").shape() == Shape{8, 3, 32, 32});
  CHECK(golden.at("logits").shape() == Shape{8, 10});
}

TEST_CASE("safetensors: write then read gives back F32, I64 and metadata") {
  TempDir dir;
  const std::string path = dir.file("round_trip.safetensors");
  std::vector<float> values(24);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.7f * i) * 1e3f;
  values[3] = -0.0f;
  values[5] = std::numeric_limits<float>::infinity();
  values[7] = std::numeric_limits<float>::quiet_NaN();
  values[11] = std::numeric_limits<float>::denorm_min();
  TensorMap tensors = {
      {"a.weight", Tensor::from_vector(values, {2, 3, 4})},
      {"b.scalar", Tensor::scalar(-3.25f)},
      {"c.empty", Tensor::empty({0, 5})},
      {"d.num_batches_tracked",
       Tensor::from_int64({-1, 0, std::numeric_limits<int64_t>::max()}, {3})},
      {"e.odd", Tensor::from_vector({1, 2, 3, 4, 5, 6, 7}, {7})},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"note", "\"quoted\" \xc3\xa9"}};
  save_safetensors(path, tensors, metadata);

  // Header padded to a multiple of 8 with spaces; data fills the rest exactly.
  const std::string bytes = read_bytes(path);
  uint64_t header_bytes;
  std::memcpy(&header_bytes, bytes.data(), 8);
  CHECK(header_bytes % 8 == 0);
  CHECK(bytes[8] == '{');
  CHECK(bytes.size() == 8 + header_bytes + (24 + 1 + 7) * 4 + 3 * 8);

  expect_identical(load_safetensors(path), tensors);
  expect_identical(load_checkpoint(path), tensors);
  CHECK(load_safetensors_metadata(path) == metadata);
  CHECK(dir.entries() == std::vector<std::string>{"round_trip.safetensors"});  // no temp left

  SUBCASE("without metadata there is no __metadata__ entry") {
    save_safetensors(path, {{"x", Tensor::ones({2})}});
    CHECK(load_safetensors_metadata(path).empty());
    CHECK(read_bytes(path).find("__metadata__") == std::string::npos);
  }
  SUBCASE("a failed save leaves the existing file and no temporary") {
    const std::string before = read_bytes(path);
    expect_error([&] { save_safetensors(path, {{"a", Tensor::ones({2})}, {"b", Tensor()}}); },
                 {path, "undefined tensor", "'b'"});
    expect_error([&] { save_safetensors(path, {{"__metadata__", Tensor::ones({1})}}); },
                 {path, "__metadata__", "reserved"});
    CHECK(read_bytes(path) == before);
    CHECK(dir.entries() == std::vector<std::string>{"round_trip.safetensors"});
  }
  SUBCASE("a directory that does not exist") {
    const std::string missing = dir.file("no_such_dir/x.safetensors");
    expect_error([&] { save_safetensors(missing, tensors); }, {missing, "cannot create"});
  }
}

TEST_CASE("safetensors: F16, BF16, F64 and I32 load as float32 and int64") {
  TempDir dir;
  const std::string path = dir.file("mixed.safetensors");
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x7BFF,
                                     0x0001, 0x8000, 0x7C00, 0x7E00};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC020, 0x4049};
  const std::vector<double> f64 = {0.1, -2.5};
  const std::vector<int32_t> i32 = {-5, std::numeric_limits<int32_t>::max()};
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("d":{"dtype":"F64","shape":[2],"data_offsets":[22,38]},)"
      R"("i":{"dtype":"I32","shape":[2,1],"data_offsets":[38,46]}})";  // unpadded, unaligned
  write_safetensors_raw(path, header, raw(f16) + raw(bf16) + raw(f64) + raw(i32));

  const TensorMap t = load_safetensors(path);
  REQUIRE(keys(t) == std::vector<std::string>{"b", "d", "h", "i"});
  CHECK(t.at("h").dtype() == DType::F32);
  CHECK(t.at("h").shape() == Shape{2, 4});
  const std::vector<float> h = t.at("h").to_vector();
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == -2.0f);
  CHECK(h[2] == 0.5f);
  CHECK(h[3] == 65504.0f);
  CHECK(h[4] == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK((h[5] == 0.0f && std::signbit(h[5])));
  CHECK(h[6] == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(h[7]));
  CHECK(t.at("b").to_vector() == std::vector<float>{1.0f, -2.5f, 3.140625f});
  CHECK(t.at("d").to_vector() == std::vector<float>{0.1f, -2.5f});
  CHECK(t.at("i").dtype() == DType::I64);
  CHECK(t.at("i").shape() == Shape{2, 1});
  CHECK(t.at("i").to_int64_vector() == std::vector<int64_t>{-5, 2147483647});
}

TEST_CASE("half_to_float matches the IEEE definition on all 65536 inputs") {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const int sign = bits >> 15, exponent = (bits >> 10) & 31, mantissa = bits & 1023;
    double expected;
    if (exponent == 31)
      expected = mantissa ? std::numeric_limits<double>::quiet_NaN()
                          : std::numeric_limits<double>::infinity();
    else if (exponent == 0)
      expected = std::ldexp(mantissa, -24);
    else
      expected = std::ldexp(1024 + mantissa, exponent - 25);
    if (sign) expected = -expected;
    const float got = half_to_float(static_cast<uint16_t>(bits));
    if (std::isnan(expected)) {
      REQUIRE_MESSAGE(std::isnan(got), "bits " << bits);
    } else {
      REQUIRE_MESSAGE(got == expected, "bits " << bits);
      REQUIRE_MESSAGE(std::signbit(got) == (sign == 1), "bits " << bits);
    }
  }
}

TEST_CASE("safetensors: bad files give errors naming the file and the problem") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string fixture = kModelsDir + "/resnet18_w16/model.safetensors";
  const std::string good = read_bytes(fixture);

  SUBCASE("missing file") {
    const std::string missing = dir.file("missing.safetensors");
    expect_error([&] { load_safetensors(missing); }, {missing, "cannot open"});
    expect_error([&] { load_checkpoint(missing); }, {missing, "cannot open"});
  }
  SUBCASE("truncated in the data") {
    write_bytes(path, good.substr(0, good.size() / 2));
    expect_error([&] { load_checkpoint(path); }, {path, "out of range", "truncated"});
  }
  SUBCASE("truncated in the header") {
    write_bytes(path, good.substr(0, 100));
    expect_error([&] { load_checkpoint(path); }, {path, "truncated"});
  }
  SUBCASE("shorter than the header length") {
    write_bytes(path, "\x10\x00\x00");
    expect_error([&] { load_safetensors(path); }, {path, "truncated"});
  }
  SUBCASE("random bytes") {
    std::mt19937 rng(7);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    noise[0] = 0x17;  // neither 'P' (zip) nor a pickle opcode
    write_bytes(path, noise);
    expect_error([&] { load_checkpoint(path); },
                 {path, "not a PyTorch checkpoint (zip or legacy torch.save) and not a "
                        "safetensors file"});
    expect_error([&] { load_safetensors(path); }, {path, "not safetensors"});
  }
  SUBCASE("offsets out of range") {
    write_safetensors_raw(path, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                          std::string(4, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "'x'", "out of range", "[0, 8]"});
    write_safetensors_raw(
        path, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})",
        std::string(8, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "'x'", "out of range"});
  }
  SUBCASE("offsets that disagree with the shape") {
    write_safetensors_raw(path, R"({"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                          std::string(16, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "'x'", "needs 16 bytes", "span 12"});
  }
  SUBCASE("overlapping tensors") {
    write_safetensors_raw(path,
                          R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                          std::string(12, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "'x'", "'y'", "overlap"});
  }
  SUBCASE("unsupported dtype") {
    write_safetensors_raw(path, R"({"m":{"dtype":"BOOL","shape":[4],"data_offsets":[0,4]}})",
                          std::string(4, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "unsupported dtype 'BOOL'", "'m'"});
  }
  SUBCASE("header that is not JSON") {
    write_safetensors_raw(path, "{not json}", "");
    expect_error([&] { load_checkpoint(path); }, {path, "bad safetensors header", "JSON"});
  }
  SUBCASE("header fields of the wrong type") {
    write_safetensors_raw(path, R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                          std::string(8, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "'x'", "non-negative"});
    write_safetensors_raw(path, R"({"x":{"dtype":"F32","shape":[2]}})", std::string(8, '\0'));
    expect_error([&] { load_safetensors(path); }, {path, "'x'", "data_offsets"});
    write_safetensors_raw(path, R"({"__metadata__":{"epoch":3}})", "");
    expect_error([&] { load_safetensors(path); }, {path, "__metadata__", "not a string"});
    write_safetensors_raw(path, R"([1, 2])", "");
    expect_error([&] { load_safetensors(path); }, {path, "not a JSON object"});
  }
  CHECK(fs::exists(fixture));  // the fixture itself is never touched
}

TEST_CASE("torch checkpoint: strided views, storage types, wrappers and prefixes") {
  TempDir dir;
  const std::string path = dir.file("hand_made.pth");
  const std::vector<uint16_t> halves = {0x3C00, 0xC000, 0x3800};
  const std::vector<uint16_t> bfloats = {0x3F80, 0xC020};
  const std::vector<double> doubles = {0.1, -2.5};
  const std::vector<int32_t> ints = {-7, 123456};
  const std::vector<int64_t> longs = {42};
  std::vector<float> sixteen(16);
  for (int i = 0; i < 16; ++i) sixteen[i] = 0.25f * i;

  // {'model_state_dict': OrderedDict(module.<name>: tensor, ...),
  //  'epoch': 2**40, 'lr': 0.1, 'flags': (None, True, False), 'history': [1, 2]}
  PickleWriter p;
  p.op('\x95').op('\x10').op('\0').op('\0').op('\0').op('\0').op('\0').op('\0').op('\0');  // FRAME
  p.op('}').op('q').op('\0').mark();
  p.short_str("model_state_dict").global("collections", "OrderedDict").op('\x94');  // memo[1]
  p.op(')').op('R').mark();
  // Transposed 2x3 view at offset 1: element (i, j) = storage[1 + i + 2j].
  p.str("module.t").tensor("FloatStorage", "0", 8, 1, {2, 3}, {1, 2});
  // A 4-D permutation of a 16-element storage: every odometer carry happens.
  p.str("module.perm").tensor("FloatStorage", "6", 16, 0, {2, 2, 2, 2}, {1, 8, 2, 4});
  p.str("module.shared").tensor("FloatStorage", "0", 8, 4, {4}, {1});
  p.str("module.expand").tensor("FloatStorage", "0", 8, 2, {2, 2}, {0, 1});  // stride 0
  p.str("module.scalar").tensor("FloatStorage", "0", 8, 5, {}, {});
  p.str("module.empty").tensor("FloatStorage", "0", 8, 8, {0, 3}, {3, 1});
  p.str("module.half").tensor("HalfStorage", "1", 3, 0, {3}, {1});
  p.str("module.bf").tensor("BFloat16Storage", "2", 2, 0, {2}, {1});
  // nn.Parameter: _rebuild_parameter(tensor, True, OrderedDict()), named by STACK_GLOBAL.
  p.str("module.param").short_str("torch._utils").short_str("_rebuild_parameter").op('\x93');
  p.mark().tensor("DoubleStorage", "3", 2, 0, {2}, {1}).op('\x88').ordered_dict().op('t').op('R');
  p.str("module.idx").tensor("IntStorage", "4", 2, 0, {2}, {1});
  p.str("module.num_batches_tracked").tensor("LongStorage", "5", 1, 0, {}, {});
  p.op('u');
  // The OrderedDict's `_metadata` attribute, as state_dict() sets it.
  p.op('}').str("_metadata").op('h').op('\x01').op(')').op('R');
  p.str("").op('}').str("version").integer(1).op('s').op('s').op('s').op('b');
  p.str("epoch").integer(int64_t{1} << 40);
  p.str("lr").real(0.1);
  p.str("flags").op('N').op('\x88').op('\x89').op('\x87');
  p.str("history").op(']').mark().integer(1).integer(-70000).op('e');
  p.op('u');
  write_torch_archive(path, p.finish(),
                      {{"0", raw(kStorage0)},
                       {"1", raw(halves)},
                       {"2", raw(bfloats)},
                       {"3", raw(doubles)},
                       {"4", raw(ints)},
                       {"5", raw(longs)},
                       {"6", raw(sixteen)}});
  std::vector<float> permuted;  // reference: element (a, b, c, d) = storage[a + 8b + 2c + 4d]
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c)
        for (int d = 0; d < 2; ++d) permuted.push_back(sixteen[a + 8 * b + 2 * c + 4 * d]);

  for (const TensorMap& t : {load_torch_checkpoint(path), load_checkpoint(path)}) {
    REQUIRE(keys(t) == std::vector<std::string>{"bf", "empty", "expand", "half", "idx",
                                                "num_batches_tracked", "param", "perm", "scalar",
                                                "shared", "t"});
    CHECK(t.at("t").shape() == Shape{2, 3});
    CHECK(t.at("t").to_vector() == std::vector<float>{1.5f, 4.5f, 7.5f, 3.0f, 6.0f, 9.0f});
    CHECK(t.at("perm").shape() == Shape{2, 2, 2, 2});
    CHECK(t.at("perm").to_vector() == permuted);
    CHECK(t.at("shared").to_vector() == std::vector<float>{6.0f, 7.5f, 9.0f, 10.5f});
    CHECK(t.at("expand").to_vector() == std::vector<float>{3.0f, 4.5f, 3.0f, 4.5f});
    CHECK(t.at("scalar").shape() == Shape{});
    CHECK(t.at("scalar").item() == 7.5f);
    CHECK(t.at("empty").shape() == Shape{0, 3});
    CHECK(t.at("half").to_vector() == std::vector<float>{1.0f, -2.0f, 0.5f});
    CHECK(t.at("bf").to_vector() == std::vector<float>{1.0f, -2.5f});
    CHECK(t.at("param").to_vector() == std::vector<float>{0.1f, -2.5f});
    CHECK(t.at("idx").dtype() == DType::I64);
    CHECK(t.at("idx").to_int64_vector() == std::vector<int64_t>{-7, 123456});
    CHECK(t.at("num_batches_tracked").dtype() == DType::I64);
    CHECK(t.at("num_batches_tracked").to_int64_vector() == std::vector<int64_t>{42});
  }
}

// Written by PyTorch 1.13 with _use_new_zipfile_serialization=False
// (tests/data/make_legacy_checkpoint.py).
TEST_CASE("torch checkpoint: the legacy format as PyTorch writes it") {
  const std::string path = kTestData + "/legacy_checkpoint.pth";
  std::vector<float> halves(12);
  for (int i = 0; i < 12; ++i) halves[i] = 0.5f * i;
  std::vector<float> transposed;
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 3; ++i) transposed.push_back(halves[i * 4 + j]);
  for (const TensorMap& t : {load_legacy_torch_checkpoint(path), load_checkpoint(path)}) {
    // Unwrapped from 'state_dict', the "module." prefix removed, the
    // optimizer's storage skipped.
    REQUIRE(keys(t) == std::vector<std::string>{"bf", "bn.num_batches_tracked", "conv.weight",
                                                "conv.weight_t", "double", "half", "idx", "param",
                                                "tail"});
    CHECK(t.at("conv.weight").shape() == Shape{3, 4});
    CHECK(t.at("conv.weight").to_vector() == halves);
    CHECK(t.at("conv.weight_t").shape() == Shape{4, 3});
    CHECK(t.at("conv.weight_t").to_vector() == transposed);
    CHECK(t.at("tail").to_vector() == std::vector<float>{4.0f, 4.5f, 5.0f, 5.5f});
    CHECK(t.at("half").to_vector() == std::vector<float>{1.0f, -2.0f, 0.5f});
    CHECK(t.at("bf").to_vector() == std::vector<float>{1.0f, -2.5f});
    CHECK(t.at("double").to_vector() == std::vector<float>{0.1f, -2.5f});
    CHECK(t.at("idx").dtype() == DType::I64);
    CHECK(t.at("idx").to_int64_vector() == std::vector<int64_t>{-7, 123456});
    CHECK(t.at("bn.num_batches_tracked").shape() == Shape{});
    CHECK(t.at("bn.num_batches_tracked").to_int64_vector() == std::vector<int64_t>{42});
    CHECK(t.at("param").to_vector() == std::vector<float>{3.0f, 4.0f});
  }
}

TEST_CASE("torch checkpoint: hand-made legacy files and their errors") {
  TempDir dir;
  const std::string path = dir.file("legacy.pth");
  // OrderedDict(w: view of storage "7" at offset 2, n: storage "3")
  PickleWriter p(/*legacy=*/true);
  p.ordered_dict().mark();
  p.str("w").tensor("FloatStorage", "7", 8, 2, {2, 2}, {2, 1});
  p.str("n").tensor("LongStorage", "3", 1, 0, {}, {});
  p.op('u');
  const std::string object = p.finish();
  const std::vector<LegacyStorage> storages = {{"3", 1, le64(5)}, {"7", 8, raw(kStorage0)}};

  write_bytes(path, legacy_file(object, storages));
  const TensorMap t = load_checkpoint(path);
  CHECK(keys(t) == std::vector<std::string>{"n", "w"});
  CHECK(t.at("w").to_vector() == std::vector<float>{3.0f, 4.5f, 6.0f, 7.5f});
  CHECK(t.at("n").to_int64_vector() == std::vector<int64_t>{5});

  SUBCASE("big-endian writer") {
    write_bytes(path, legacy_file(object, storages, /*little_endian=*/false));
    expect_error([&] { load_checkpoint(path); }, {path, "big-endian"});
  }
  SUBCASE("element count differs from the persistent id") {
    write_bytes(path, legacy_file(object, {{"3", 1, le64(5)}, {"7", 9, raw(kStorage0) + "abcd"}}));
    expect_error([&] { load_checkpoint(path); }, {path, "storage '7' holds 9 elements", "8"});
  }
  SUBCASE("file ends inside a storage") {
    std::string bytes = legacy_file(object, storages);
    write_bytes(path, bytes.substr(0, bytes.size() - 3));
    expect_error([&] { load_checkpoint(path); }, {path, "truncated: storage '7'"});
  }
  SUBCASE("file ends before a storage's size") {
    std::string bytes = legacy_file(object, storages);
    write_bytes(path, bytes.substr(0, bytes.size() - 32 - 4));
    expect_error([&] { load_checkpoint(path); }, {path, "truncated: storage '7' has no size"});
  }
  SUBCASE("a listed storage no persistent id names") {
    write_bytes(path, legacy_file(object, {{"3", 1, le64(5)}, {"5", 1, le64(1)}, {"7", 8,
                                                                                raw(kStorage0)}}));
    expect_error([&] { load_checkpoint(path); }, {path, "storage '5' is listed but never used"});
  }
  SUBCASE("a tensor's storage missing from the list") {
    write_bytes(path, legacy_file(object, {{"3", 1, le64(5)}}));
    expect_error([&] { load_checkpoint(path); },
                 {path, "storage key '7' of tensor 'w' missing from the file's storage list"});
  }
  SUBCASE("a view of another storage (PyTorch < 0.4)") {
    PickleWriter v(/*legacy=*/false);
    v.ordered_dict().str("w").global("torch._utils", "_rebuild_tensor_v2").mark();
    v.mark().str("storage").global("torch", "FloatStorage").str("7").str("cpu").integer(8);
    v.mark().str("6").integer(0).integer(8).op('t').op('t').op('Q');
    v.integer(0).int_tuple({8}).int_tuple({1}).op('\x89').ordered_dict().op('t').op('R').op('s');
    write_bytes(path, legacy_file(v.finish(), {{"7", 8, raw(kStorage0)}}));
    expect_error([&] { load_checkpoint(path); }, {path, "view of another storage"});
  }
}

TEST_CASE("torch checkpoint: nested wrappers, pycls's model_state, partial module. prefixes") {
  TempDir dir;
  const std::string path = dir.file("nested.pth");
  // {'model': {'state_dict': {'module.a': t, 'b': t}}, 'optimizer': {'w': t}}
  PickleWriter p;
  p.op('}').mark().str("model").op('}').str("state_dict").op('}').mark();
  p.str("module.a").tensor("FloatStorage", "0", 8, 0, {2}, {1});
  p.str("b").tensor("FloatStorage", "0", 8, 2, {2}, {1});
  p.op('u').op('s');
  p.str("optimizer").op('}').str("w").tensor("FloatStorage", "0", 8, 0, {8}, {1}).op('s');
  p.op('u');
  write_torch_archive(path, p.finish(), {{"0", raw(kStorage0)}});
  const TensorMap t = load_checkpoint(path);
  // Only some keys carry the prefix: all are kept as they are.
  CHECK(keys(t) == std::vector<std::string>{"b", "module.a"});
  CHECK(t.at("b").to_vector() == std::vector<float>{3.0f, 4.5f});

  // pycls: {'epoch': 99, 'model_state': ..., 'optimizer_state': {...}, 'cfg': yaml text}
  PickleWriter q;
  q.op('}').mark().str("epoch").integer(99).str("model_state").ordered_dict().mark();
  q.str("stem.conv.weight").tensor("FloatStorage", "0", 8, 0, {2, 2}, {2, 1});
  q.op('u').str("optimizer_state").op('}').str("w").tensor("FloatStorage", "0", 8, 4, {4}, {1});
  q.op('s').str("cfg").str("MODEL:\n  TYPE: regnet\n").op('u');
  write_torch_archive(path, q.finish(), {{"0", raw(kStorage0)}});
  const TensorMap pycls = load_checkpoint(path);
  CHECK(keys(pycls) == std::vector<std::string>{"stem.conv.weight"});
  CHECK(pycls.at("stem.conv.weight").to_vector() == std::vector<float>{0.0f, 1.5f, 3.0f, 4.5f});
}

// Written by PyTorch 1.13 (tests/data/make_training_checkpoints.py): one
// state dict saved as training scripts save checkpoints, zip and legacy.
TEST_CASE("torch checkpoint: training scripts' checkpoints list their state dicts") {
  const std::string dir = kTestData + "/training_checkpoints/";
  const TensorMap bare = load_checkpoint(dir + "bare.pth");
  REQUIRE(bare.size() == 74);
  TensorMap ema;  // the EMA copies hold half of each float tensor
  for (const auto& entry : bare) {
    const Tensor& tensor = entry.second;
    ema.emplace(entry.first, tensor.dtype() == DType::F32 ? Tensor::from_vector([&] {
      std::vector<float> v = tensor.to_vector();
      for (float& x : v) x *= 0.5f;
      return v;
    }(), tensor.shape()) : tensor);
  }

  struct Layout {
    std::string file;
    std::vector<std::pair<std::string, size_t>> state_dicts;  // entry, tensors
    std::string ema_entry;
  };
  const std::vector<Layout> layouts = {
      {"imagenet_example", {{"", 1}, {"state_dict", 74}}, ""},
      {"timm_train", {{"state_dict", 74}, {"state_dict_ema", 74}}, "state_dict_ema"},
      {"deit_main", {{"model", 74}, {"model_ema", 74}}, "model_ema"},
      {"swin_main", {{"model", 74}, {"rng_state", 1}}, ""},
      {"half", {{"", 1}, {"state_dict", 74}}, ""},
  };
  for (const Layout& layout : layouts)
    for (const std::string& suffix : {std::string(".pth"), std::string("_legacy.pth")}) {
      if (layout.file == "half" && suffix != ".pth") continue;
      const std::string path = dir + layout.file + suffix;
      INFO(path);
      const std::unique_ptr<Checkpoint> checkpoint = open_checkpoint(path);
      const std::vector<StateDictEntry>& found = checkpoint->state_dicts();
      REQUIRE(found.size() == layout.state_dicts.size());
      for (size_t i = 0; i < found.size(); ++i) {
        CHECK(found[i].entry == layout.state_dicts[i].first);
        CHECK(found[i].names.size() == layout.state_dicts[i].second);
        CHECK(found[i].ema == (!layout.ema_entry.empty() && found[i].entry == layout.ema_entry));
        if (found[i].names.size() == bare.size()) {
          CHECK(found[i].names == keys(bare));  // the "module." prefix removed
          expect_identical(checkpoint->load(i), found[i].ema ? ema : bare);
        }
      }
      expect_identical(load_checkpoint(path), bare);
    }
  expect_identical(load_checkpoint(dir + "bfloat16_legacy.pth"), bare);

  // The RNG state beside Swin's weights is a uint8 tensor: listed, not loadable.
  const std::string swin = dir + "swin_main.pth";
  expect_error([&] { open_checkpoint(swin)->load(1); },
               {swin, "tensor 'torch': unsupported storage type 'torch.ByteStorage'"});
}

TEST_CASE("checkpoint: EMA keys and the default state dict") {
  for (const char* key : {"state_dict_ema", "model_ema", "ema", "ema_state_dict", "model_ema_v2"})
    CHECK_MESSAGE(is_ema_key(key), key);
  for (const char* key : {"state_dict", "model", "schema", "emap", "theme_a", ""})
    CHECK_MESSAGE(!is_ema_key(key), key);
  auto entry = [](const std::string& name, size_t tensors, bool ema) {
    return StateDictEntry{name, std::vector<std::string>(tensors, "x"), ema};
  };
  CHECK(default_state_dict({entry("", 1, false), entry("state_dict", 3, false)}) == 1);
  CHECK(default_state_dict({entry("model_ema", 9, true), entry("model", 3, false)}) == 1);
  CHECK(default_state_dict({entry("a", 3, false), entry("b", 3, false)}) == 0);
  CHECK(default_state_dict({entry("model_ema", 9, true)}) == 0);
}

// Each pickle would run `touch <marker>` if it were executed. Loading
// either succeeds, the placeholder left inert beside the state dict, or
// fails where a state dict needs real data; the marker never appears.
TEST_CASE("torch checkpoint: other classes become inert placeholders, never run") {
  TempDir dir;
  const std::string path = dir.file("evil.pth");
  const std::string marker = dir.file("pwned");
  const std::string touch = "touch " + marker;
  using Payload = std::function<void(PickleWriter&)>;
  // {'state_dict': OrderedDict(w: tensor), 'extra': <payload>}, zip and legacy.
  auto expect_loads_inert = [&](const Payload& payload) {
    for (bool legacy : {false, true}) {
      INFO((legacy ? "legacy" : "zip"));
      PickleWriter p(legacy);
      p.op('}').mark().str("state_dict").ordered_dict().str("w");
      p.tensor("FloatStorage", "0", 8, 0, {8}, {1}).op('s').str("extra");
      payload(p);
      p.op('u');
      if (legacy)
        write_bytes(path, legacy_file(p.finish(), {{"0", 8, raw(kStorage0)}}));
      else
        write_torch_archive(path, p.finish(), {{"0", raw(kStorage0)}});
      const TensorMap t = load_checkpoint(path);
      CHECK(keys(t) == std::vector<std::string>{"w"});
      CHECK(t.at("w").to_vector() == kStorage0);
    }
  };

  const std::pair<std::string, std::string> globals[] = {
      {"os", "system"},          {"posix", "system"},        {"builtins", "eval"},
      {"builtins", "exec"},      {"__builtin__", "exec"},    {"subprocess", "Popen"},
      {"subprocess", "call"},    {"torch.storage", "_load_from_bytes"},
  };
  for (const auto& global : globals) {
    // Named copies: lambdas below capture them (structured bindings cannot
    // be captured before C++20).
    const std::string module = global.first, name = global.second;
    const std::string full = module + "." + name;
    INFO("global " << full);
    // REDUCE: f('touch ...'), as the pickled object and beside a state dict.
    PickleWriter p;
    p.global(module, name).str(touch).op('\x85').op('R');
    write_torch_archive(path, p.finish());
    expect_error([&] { load_checkpoint(path); },
                 {path, "the pickled object is a placeholder for '" + full + "'",
                  "not a state dict"});
    expect_loads_inert(
        [&](PickleWriter& q) { q.global(module, name).str(touch).op('\x85').op('R'); });
    // NEWOBJ: cls.__new__(cls, 'touch ...'), then BUILD: __setstate__(state).
    expect_loads_inert([&](PickleWriter& q) {
      q.global(module, name).str(touch).op('\x85').op('\x81');
      q.op('}').str("args").str(touch).op('s').op('b');
    });
    // NEWOBJ_EX: cls.__new__(cls, 'touch ...', shell=True).
    expect_loads_inert([&](PickleWriter& q) {
      q.global(module, name).str(touch).op('\x85');
      q.op('}').str("shell").op('\x88').op('s').op('\x92');
    });
    // INST "module\nname\n" (protocol 0), its arguments since MARK.
    expect_loads_inert([&](PickleWriter& q) {
      q.mark().str(touch).op('i').text(module + "\n" + name + "\n");
    });
    // OBJ: MARK, class, arguments.
    expect_loads_inert([&](PickleWriter& q) { q.mark().global(module, name).str(touch).op('o'); });
  }

  // getattr(__import__('os'), 'system')('touch ...'): REDUCE on placeholders.
  expect_loads_inert([&](PickleWriter& q) {
    q.global("builtins", "getattr").global("builtins", "__import__").str("os").op('\x85');
    q.op('R').str("system").op('\x86').op('R').str(touch).op('\x85').op('R');
  });
  // A dict subclass filled by SETITEMS and a list subclass by APPENDS, then
  // called and built again: placeholders all the way.
  expect_loads_inert([&](PickleWriter& q) {
    q.global("yacs.config", "CfgNode").op(')').op('\x81').mark().str("cmd").str(touch);
    q.str("n").integer(3).op('u').str("k").str(touch).op('s');
    q.op('}').str("_CfgNode__immutable").op('\x88').op('s').op('b');
    q.str(touch).op('\x85').op('R').op('}').op('b');
    q.global("collections", "UserList").op(')').op('\x81').mark().str(touch).op('e');
    q.str(touch).op('a').op('\x86');
  });
  // A numpy scalar, bytes, a set and an int wider than 64 bits, as scripts
  // keep an accuracy, a seed or a hash in their metadata.
  expect_loads_inert([&](PickleWriter& q) {
    q.mark().global("numpy.core.multiarray", "scalar").global("numpy", "dtype").str("f8");
    q.op('\x89').op('\x88').op('\x87').op('R').mark().integer(3).str("<").op('N').op('N');
    q.op('N').integer(-1).integer(-1).integer(0).op('t').op('b');
    q.op('C').text(std::string("\x08", 1) + std::string(8, '\x11')).op('\x86').op('R');
    q.global("__builtin__", "set").op(']').mark().integer(1).op('e').op('\x85').op('R');
    q.op('\x8a').text(std::string("\x09", 1) + std::string(9, '\x7f'));
    q.op('\x8b').text(raw(std::vector<uint32_t>{0})).op('t');
  });

  // Where a state dict needs real data, a placeholder is refused.
  PickleWriter as_storage;  // _rebuild_tensor_v2(os.system('touch ...'), 0, (8,), (1,), ...)
  as_storage.ordered_dict().str("w").global("torch._utils", "_rebuild_tensor_v2").mark();
  as_storage.global("os", "system").str(touch).op('\x85').op('R');
  as_storage.integer(0).int_tuple({8}).int_tuple({1}).op('\x89').ordered_dict().op('t').op('R');
  as_storage.op('s');
  write_torch_archive(path, as_storage.finish());
  expect_error([&] { load_checkpoint(path); },
               {path, "_rebuild_tensor_v2 storage is a placeholder"});
  PickleWriter as_storage_type;  // ('storage', os.system, '0', 'cpu', 8)
  as_storage_type.ordered_dict().str("w").global("torch._utils", "_rebuild_tensor_v2").mark();
  as_storage_type.mark().str("storage").global("os", "system").str("0").str("cpu").integer(8);
  as_storage_type.op('t').op('Q').integer(0).int_tuple({8}).int_tuple({1}).op('\x89');
  as_storage_type.ordered_dict().op('t').op('R').op('s');
  write_torch_archive(path, as_storage_type.finish(), {{"0", raw(kStorage0)}});
  expect_error([&] { load_checkpoint(path); },
               {path, "persistent id names 'os.system', not a storage type"});
  // The same through STACK_GLOBAL (protocol 4), inside a state dict: no tensors.
  PickleWriter in_state_dict;
  in_state_dict.ordered_dict().str("w").short_str("os").short_str("system").op('\x93');
  in_state_dict.str(touch).op('\x85').op('R').op('s');
  write_torch_archive(path, in_state_dict.finish());
  expect_error([&] { load_torch_checkpoint(path); }, {path, "no tensors found"});
  // A placeholder is not a call target for an allowed global's arguments.
  PickleWriter placeholder_args;
  placeholder_args.global("collections", "OrderedDict").global("os", "system").str(touch);
  placeholder_args.op('\x85').op('R').op('R');
  write_torch_archive(path, placeholder_args.finish());
  expect_error([&] { load_checkpoint(path); },
               {path, "arguments of 'collections.OrderedDict' are a placeholder"});
  CHECK(!fs::exists(marker));
}

TEST_CASE("torch checkpoint: bad archives give errors naming the file and the problem") {
  TempDir dir;
  const std::string path = dir.file("bad.pth");
  auto one_tensor = [](const std::string& storage_type, const std::string& key, int64_t numel,
                       int64_t offset, const Shape& size, const Shape& stride) {
    PickleWriter p;
    p.ordered_dict().str("w").tensor(storage_type, key, numel, offset, size, stride).op('s');
    return p.finish();
  };

  SUBCASE("missing file") {
    const std::string missing = dir.file("missing.pth");
    expect_error([&] { load_torch_checkpoint(missing); }, {missing, "cannot open"});
  }
  SUBCASE("truncated") {
    const std::string good = read_bytes(kModelsDir + "/resnet18_w16/model.pth");
    write_bytes(path, good.substr(0, good.size() / 2));
    expect_error([&] { load_checkpoint(path); }, {path, "zip", "truncated"});
  }
  SUBCASE("random bytes") {
    std::mt19937 rng(11);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    write_bytes(path, noise);
    expect_error([&] { load_torch_checkpoint(path); }, {path, "not a readable zip archive"});
  }
  SUBCASE("legacy torch.save file cut after its magic number") {
    write_bytes(path, "\x80\x02\x8a\x0al\xfc\x9c" "F\xf9 j\xa8P\x19.");
    expect_error([&] { load_checkpoint(path); }, {path, "protocol version", "truncated pickle"});
  }
  SUBCASE("a pickle that is not a legacy torch.save file") {
    write_bytes(path, "\x80\x02}q\x00.");
    expect_error([&] { load_checkpoint(path); }, {path, "magic number of a legacy torch.save"});
  }
  SUBCASE("tar archive of PyTorch < 0.4") {
    std::string tar(1024, '\0');
    tar.replace(0, 8, "sys_info");
    tar.replace(257, 6, std::string("ustar\0", 6));
    write_bytes(path, tar);
    expect_error([&] { load_checkpoint(path); }, {path, "tar archive", "PyTorch 0.4"});
  }
  SUBCASE("zip without data.pkl") {
    write_zip(path, {{"readme.txt", "hello"}});
    expect_error([&] { load_checkpoint(path); }, {path, "not a torch.save checkpoint"});
  }
  SUBCASE("storage key missing") {
    write_torch_archive(path, one_tensor("FloatStorage", "9", 8, 0, {8}, {1}),
                        {{"0", raw(kStorage0)}});
    expect_error([&] { load_checkpoint(path); },
                 {path, "storage key '9'", "'w'", "missing", "archive/data/9"});
  }
  SUBCASE("view reaching past its storage") {
    write_torch_archive(path, one_tensor("FloatStorage", "0", 8, 6, {2, 2}, {1, 1}),
                        {{"0", raw(kStorage0)}});
    expect_error([&] { load_checkpoint(path); },
                 {path, "storage '0' too small for tensor 'w'", "element 8 of 8"});
  }
  SUBCASE("storage record shorter than its element count") {
    write_torch_archive(path, one_tensor("FloatStorage", "0", 10, 0, {10}, {1}),
                        {{"0", raw(kStorage0)}});
    expect_error([&] { load_checkpoint(path); }, {path, "storage '0'", "too small"});
  }
  SUBCASE("unsupported storage type") {
    write_torch_archive(path, one_tensor("ByteStorage", "0", 8, 0, {8}, {1}),
                        {{"0", std::string(8, '\0')}});
    expect_error([&] { load_checkpoint(path); },
                 {path, "unsupported storage type 'torch.ByteStorage'"});
  }
  SUBCASE("pickle cut before STOP") {
    PickleWriter p;
    p.ordered_dict().str("w").tensor("FloatStorage", "0", 8, 0, {8}, {1});
    write_torch_archive(path, p.unfinished(), {{"0", raw(kStorage0)}});
    expect_error([&] { load_checkpoint(path); }, {path, "archive/data.pkl", "truncated pickle"});
  }
  SUBCASE("unknown opcode") {
    PickleWriter p;
    p.ordered_dict().op('\x8f');  // EMPTY_SET
    write_torch_archive(path, p.finish());
    expect_error([&] { load_checkpoint(path); }, {path, "unsupported pickle opcode 0x8f"});
  }
  SUBCASE("no tensors") {
    PickleWriter p;
    p.op('}').str("epoch").integer(3).op('s');
    write_torch_archive(path, p.finish());
    expect_error([&] { load_checkpoint(path); }, {path, "no tensors found"});
  }
  SUBCASE("not a dict") {
    PickleWriter p;
    p.op(']');
    write_torch_archive(path, p.finish());
    expect_error([&] { load_checkpoint(path); }, {path, "is a list, not a state dict"});
  }
  SUBCASE("self-referencing wrapper") {
    PickleWriter p;  // d = {}; d['model'] = d
    p.op('}').op('q').op('\0').str("model").op('h').op('\0').op('s');
    write_torch_archive(path, p.finish());
    expect_error([&] { load_checkpoint(path); }, {path, "nested deeper"});
  }
}

TEST_CASE("corrupted headers and pickles raise errors, never crash") {
  TempDir dir;
  std::mt19937 rng(2024);
  auto corrupt = [&](std::string bytes, size_t begin, size_t end) {
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < flips; ++i)
      bytes[begin + rng() % (end - begin)] = static_cast<char>(rng());
    return bytes;
  };
  // Loading must either succeed or throw std::runtime_error (anything else,
  // or a crash, fails the test).
  auto load_or_runtime_error = [](const std::string& path) {
    try {
      load_checkpoint(path);
    } catch (const std::runtime_error&) {
    }
  };

  const std::string safetensors_path = dir.file("fuzz.safetensors");
  save_safetensors(safetensors_path, {{"a", Tensor::ones({2, 3})},
                                      {"b", Tensor::from_int64({1, 2}, {2})}},
                   {{"format", "pt"}});
  const std::string good = read_bytes(safetensors_path);
  uint64_t header_bytes;
  std::memcpy(&header_bytes, good.data(), 8);
  for (int trial = 0; trial < 300; ++trial) {
    write_bytes(safetensors_path, corrupt(good, 8, 8 + header_bytes));
    load_or_runtime_error(safetensors_path);
  }

  const std::string torch_path = dir.file("fuzz.pth");
  PickleWriter p;
  p.op('}').mark().str("model").ordered_dict().mark();
  p.str("a").tensor("FloatStorage", "0", 8, 1, {2, 3}, {1, 2});
  p.str("b").tensor("HalfStorage", "1", 3, 0, {3}, {1});
  p.op('u').str("epoch").integer(7).op('u');
  const std::string pickle = p.finish();
  for (int trial = 0; trial < 300; ++trial) {
    write_torch_archive(torch_path, corrupt(pickle, 2, pickle.size()),
                        {{"0", raw(kStorage0)}, {"1", std::string(6, '\0')}});
    load_or_runtime_error(torch_path);
  }

  // The legacy format has no archive around it: any byte may be hit.
  const std::string legacy = read_bytes(kTestData + "/legacy_checkpoint.pth");
  for (int trial = 0; trial < 300; ++trial) {
    write_bytes(torch_path, corrupt(legacy, 0, legacy.size()));
    load_or_runtime_error(torch_path);
  }
}
