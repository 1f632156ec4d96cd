#include "engine/torch_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <filesystem>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pk {

namespace {

// Bytes owned elsewhere: a zip record read into a vector, or a mapped file.
struct ByteView {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ByteView() = default;
  ByteView(const uint8_t* d, size_t n) : data(d), size(n) {}
  explicit ByteView(const std::vector<uint8_t>& v) : data(v.data()), size(v.size()) {}
};

// ---------------------------------------------------------------------------
// Zip archive access (libzip)

class ZipArchive {
 public:
  explicit ZipArchive(const std::string& path) : path_(path) {
    int code = 0;
    archive_ = zip_open(path.c_str(), ZIP_RDONLY, &code);
    if (archive_) return;
    zip_error_t error;
    zip_error_init_with_code(&error, code);
    std::string why = zip_error_strerror(&error);
    zip_error_fini(&error);
    if (code == ZIP_ER_NOENT || code == ZIP_ER_OPEN || code == ZIP_ER_READ)
      throw_checkpoint_error(path, "cannot open: " + why);
    throw_checkpoint_error(path, "not a readable zip archive (truncated or corrupt file?): " + why);
  }
  ~ZipArchive() { zip_discard(archive_); }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    const zip_int64_t count = zip_get_num_entries(archive_, 0);
    for (zip_int64_t i = 0; i < count; ++i)
      if (const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0))
        out.emplace_back(name);
    return out;
  }

  bool contains(const std::string& name) const {
    return zip_name_locate(archive_, name.c_str(), 0) >= 0;
  }

  std::vector<uint8_t> read(const std::string& name) const {
    const zip_int64_t index = zip_name_locate(archive_, name.c_str(), 0);
    zip_stat_t info;
    zip_stat_init(&info);
    if (index < 0 || zip_stat_index(archive_, index, 0, &info) != 0 ||
        !(info.valid & ZIP_STAT_SIZE))
      throw_checkpoint_error(path_, "cannot find record '" + name + "' in the zip archive");
    check_declared_size(name, info);
    zip_file_t* file = zip_fopen_index(archive_, index, 0);
    if (!file)
      throw_checkpoint_error(path_, "cannot open record '" + name + "': " + zip_strerror(archive_));
    std::vector<uint8_t> bytes(info.size);
    const zip_int64_t got = zip_fread(file, bytes.data(), info.size);
    const std::string why = got < 0 ? zip_file_strerror(file) : "short read";
    zip_fclose(file);
    if (got < 0 || static_cast<zip_uint64_t>(got) != info.size)
      throw_checkpoint_error(path_, "cannot read record '" + name + "' (truncated or corrupt?): " +
                                        why);
    return bytes;
  }

 private:
  // A record's declared size is only allocated when its stored bytes can
  // hold it: a few bytes of a crafted archive can declare gigabytes.
  // torch.save stores records uncompressed; deflate expands at most 1032:1.
  void check_declared_size(const std::string& name, const zip_stat_t& info) const {
    const bool known = (info.valid & ZIP_STAT_COMP_SIZE) && (info.valid & ZIP_STAT_COMP_METHOD);
    const zip_uint64_t file_size = static_cast<zip_uint64_t>(std::filesystem::file_size(path_));
    zip_uint64_t most = 0;
    if (known && info.comp_size <= file_size) {
      if (info.comp_method == ZIP_CM_STORE) most = info.comp_size;
      if (info.comp_method == ZIP_CM_DEFLATE) most = info.comp_size * 1032 + 1024;
    }
    if (info.size > most)
      throw_checkpoint_error(path_, "record '" + name + "' declares " + std::to_string(info.size) +
                                        " bytes, more than its " +
                                        std::to_string(known ? info.comp_size : 0) +
                                        " stored bytes can hold (corrupt or crafted archive)");
  }

  std::string path_;
  zip_t* archive_ = nullptr;
};

// ---------------------------------------------------------------------------
// Pickled values: the kinds a state dict and its wrappers are made of, and
// placeholders for objects of every other class.

// torch.save's storage classes. Those packptq loads name their element type;
// the others (an RNG state's ByteStorage, a mask's BoolStorage) may appear in
// a checkpoint's metadata, so they are known by element size, to be skipped.
struct StorageType {
  const char* name;
  size_t element_size;
  bool loadable;
  StoredDType dtype;  // loadable only
};

const StorageType kStorageTypes[] = {
    {"torch.FloatStorage", 4, true, StoredDType::F32},
    {"torch.HalfStorage", 2, true, StoredDType::F16},
    {"torch.BFloat16Storage", 2, true, StoredDType::BF16},
    {"torch.DoubleStorage", 8, true, StoredDType::F64},
    {"torch.LongStorage", 8, true, StoredDType::I64},
    {"torch.IntStorage", 4, true, StoredDType::I32},
    {"torch.ByteStorage", 1, false, StoredDType::F32},
    {"torch.CharStorage", 1, false, StoredDType::F32},
    {"torch.BoolStorage", 1, false, StoredDType::F32},
    {"torch.ShortStorage", 2, false, StoredDType::F32},
    {"torch.ComplexFloatStorage", 8, false, StoredDType::F32},
    {"torch.ComplexDoubleStorage", 16, false, StoredDType::F32},
};

const StorageType* find_storage_type(const std::string& name) {
  for (const StorageType& type : kStorageTypes)
    if (name == type.name) return &type;
  return nullptr;
}

struct StorageRef {
  std::string key;  // zip: record <archive>/data/<key>; legacy: a key of the storage list
  std::string type_name;
  const StorageType* type = nullptr;  // null: a storage class packptq does not know
  int64_t numel = 0;
};

// The only globals whose calls the unpickler carries out, as plain data
// constructors.
enum class Callable { OrderedDict, RebuildTensorV2, RebuildParameter };

struct AllowedGlobal {
  const char* name;
  Callable callable;
};

const AllowedGlobal kAllowedGlobals[] = {
    {"collections.OrderedDict", Callable::OrderedDict},
    {"torch._utils._rebuild_tensor_v2", Callable::RebuildTensorV2},
    {"torch._utils._rebuild_parameter", Callable::RebuildParameter},
};

const AllowedGlobal* find_allowed_global(const std::string& name) {
  for (const AllowedGlobal& g : kAllowedGlobals)
    if (name == g.name) return &g;
  return nullptr;
}

struct Value;
// Values are owned by the Unpickler's arena and refer to each other by plain
// pointers: a pickle may build cycles (d['model'] = d) or deep nesting, which
// shared ownership would leak or tear down recursively.
using ValuePtr = Value*;

struct Value {
  enum class Kind {
    None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Object, Storage, Tensor
  };
  Kind kind = Kind::None;
  int64_t integer = 0;                                 // Bool, Int
  double real = 0.0;                                   // Float
  std::string text;                                    // String, Bytes; Global, Object: class
  std::vector<ValuePtr> items;                         // Tuple, List; Object: appended items
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // Dict, Object: set items, in order
  const AllowedGlobal* allowed = nullptr;              // Global: null for any other class
  ValuePtr args = nullptr, state = nullptr;            // Object: construction arguments, BUILD
  StorageRef storage;                                  // Storage; the storage a Tensor views
  int64_t offset = 0;                                  // Tensor view, in elements
  Shape size, stride;
};

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::Bytes: return "bytes";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Global: return "global";
    case Value::Kind::Object: return "placeholder";
    case Value::Kind::Storage: return "storage";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

// "a list", "a placeholder for an 'argparse.Namespace' object"
std::string describe(const Value& v) {
  if (v.kind == Value::Kind::Object || v.kind == Value::Kind::Global)
    return std::string("a ") + kind_name(v.kind) + " for '" + v.text + "'";
  return std::string("a ") + kind_name(v.kind);
}

// ---------------------------------------------------------------------------
// Restricted unpickler. It builds Values and nothing else: it never imports
// a module or calls a function. The calls it carries out are the allowed
// globals above, as plain data constructors; a call, instantiation or
// __setstate__ (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, BUILD) of any other
// class or function gives an inert placeholder (Kind::Object) that records
// the class name, the arguments, items set or appended and the BUILD state,
// and may itself be held, called or built again. Each opcode consumes at
// least one byte of the pickle and creates at most three Values (INST), so
// memory grows linearly with the pickle's length.

class Unpickler {
 public:
  // Reads one pickle starting at byte `start` of `bytes`.
  Unpickler(const std::string& path, const std::string& record, ByteView bytes, size_t start = 0)
      : path_(path), record_(record), bytes_(bytes), pos_(start) {}

  // Where the pickle ended: the byte after its STOP.
  size_t end() const { return pos_; }
  // Every storage a persistent id named, by key.
  const std::map<std::string, StorageRef>& storages() const { return storages_; }

  // The unpickled object; it lives as long as this Unpickler.
  const Value& run() {
    while (true) {
      op_pos_ = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80:  // PROTO
          if (u8() > 5) fail("unsupported pickle protocol");
          break;
        case 0x95: take(8); break;  // FRAME: a length hint only
        case '.':                   // STOP
          if (stack_.empty()) fail("STOP with an empty stack");
          return *stack_.back();
        case '(': marks_.push_back(stack_.size()); break;  // MARK

        case 'N': push(make_value(Value::Kind::None)); break;
        case 0x88: push(make_bool(true)); break;   // NEWTRUE
        case 0x89: push(make_bool(false)); break;  // NEWFALSE
        case 'K': push(make_int(u8())); break;     // BININT1
        case 'M': push(make_int(u16())); break;    // BININT2
        case 'J': push(make_int(static_cast<int32_t>(u32()))); break;  // BININT
        case 0x8a: push(make_long(u8())); break;                        // LONG1
        case 0x8b: push(make_long(u32())); break;                       // LONG4
        case 'G': {                                                     // BINFLOAT (big-endian)
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | u8();
          auto v = make_value(Value::Kind::Float);
          std::memcpy(&v->real, &bits, sizeof bits);
          push(v);
          break;
        }
        case 'X': push(make_string(u32())); break;     // BINUNICODE
        case 0x8c: push(make_string(u8())); break;     // SHORT_BINUNICODE
        case 0x8d: push(make_string(u64())); break;    // BINUNICODE8
        case 'C': push(make_bytes(u8())); break;       // SHORT_BINBYTES
        case 'B': push(make_bytes(u32())); break;      // BINBYTES
        case 0x8e: push(make_bytes(u64())); break;     // BINBYTES8
        case '0': pop(); break;                        // POP
        case '1': pop_mark(); break;                   // POP_MARK
        case '2': push(top()); break;                  // DUP

        case ')': push(make_value(Value::Kind::Tuple)); break;  // EMPTY_TUPLE
        case 't': push(make_tuple(pop_mark())); break;          // TUPLE
        case 0x85: push(make_tuple(pop_n(1))); break;           // TUPLE1
        case 0x86: push(make_tuple(pop_n(2))); break;           // TUPLE2
        case 0x87: push(make_tuple(pop_n(3))); break;           // TUPLE3
        case ']': push(make_value(Value::Kind::List)); break;   // EMPTY_LIST
        case 'l': {                                             // LIST
          auto list = make_value(Value::Kind::List);
          list->items = pop_mark();
          push(list);
          break;
        }
        case 'a': {  // APPEND
          ValuePtr item = pop();
          expect_top(Value::Kind::List, "APPEND").items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<ValuePtr> items = pop_mark();
          auto& list = expect_top(Value::Kind::List, "APPENDS").items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case '}': push(make_value(Value::Kind::Dict)); break;  // EMPTY_DICT
        case 'd': {                                            // DICT
          auto dict = make_value(Value::Kind::Dict);
          set_items(*dict, pop_mark());
          push(dict);
          break;
        }
        case 's': {  // SETITEM
          std::vector<ValuePtr> pair = pop_n(2);
          set_items(expect_top(Value::Kind::Dict, "SETITEM"), pair);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<ValuePtr> items = pop_mark();
          set_items(expect_top(Value::Kind::Dict, "SETITEMS"), items);
          break;
        }

        case 'q': memo_[u8()] = top(); break;    // BINPUT
        case 'r': memo_[u32()] = top(); break;   // LONG_BINPUT
        case 0x94: {                             // MEMOIZE
          const uint64_t index = memo_.size();  // before inserting
          memo_[index] = top();
          break;
        }
        case 'h': push(memo_get(u8())); break;   // BINGET
        case 'j': push(memo_get(u32())); break;  // LONG_BINGET

        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = line();
          push(make_global(module, line()));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr name = pop(), module = pop();
          if (module->kind != Value::Kind::String || name->kind != Value::Kind::String)
            fail("STACK_GLOBAL needs two strings");
          push(make_global(module->text, name->text));
          break;
        }
        case 'R':     // REDUCE: callable(*args)
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), the same for our globals
          ValuePtr args = pop(), callable = pop();
          push(call(callable, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
          ValuePtr kwargs = pop(), args = pop(), callable = pop();
          if (callable->kind == Value::Kind::Global && callable->allowed &&
              !(kwargs->kind == Value::Kind::Dict && kwargs->entries.empty()))
            fail("'" + callable->text + "' called with keyword arguments");
          push(call(callable, args));
          break;
        }
        case 'i': {  // INST "module\nname\n": class(*items since MARK)
          std::string module = line();
          ValuePtr global = make_global(module, line());
          push(call(global, make_tuple(pop_mark())));
          break;
        }
        case 'o': {  // OBJ: items since MARK are the class, then its arguments
          std::vector<ValuePtr> items = pop_mark();
          if (items.empty()) fail("OBJ without a class");
          ValuePtr callable = items.front();
          push(call(callable, make_tuple(std::vector<ValuePtr>(items.begin() + 1, items.end()))));
          break;
        }
        case 'b': {  // BUILD: obj.__setstate__(state)
          ValuePtr state = pop();
          build(top(), state);
          break;
        }
        case 'Q': push(persistent_load(pop())); break;  // BINPERSID

        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex +
               " (not one a state dict uses)");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw_checkpoint_error(path_, "pickle '" + record_ + "' at byte " + std::to_string(op_pos_) +
                                      ": " + what);
  }

  // ---- reading the byte stream ----
  const uint8_t* take(uint64_t n) {
    if (n > bytes_.size - pos_) fail("truncated pickle (data ends before STOP)");
    const uint8_t* p = bytes_.data + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T little_endian() {
    T v;
    std::memcpy(&v, take(sizeof v), sizeof v);
    return v;
  }
  uint8_t u8() { return *take(1); }
  uint16_t u16() { return little_endian<uint16_t>(); }
  uint32_t u32() { return little_endian<uint32_t>(); }
  uint64_t u64() { return little_endian<uint64_t>(); }

  // A little-endian two's complement integer of n bytes; one wider than 64
  // bits (a seed in a script's metadata) becomes a placeholder.
  ValuePtr make_long(uint64_t n) {
    const uint8_t* p = take(n);
    if (n > 8) return make_object("builtins.int", nullptr);
    uint64_t bits = 0;
    for (int i = static_cast<int>(n) - 1; i >= 0; --i) bits = (bits << 8) | p[i];
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) bits |= ~uint64_t{0} << (8 * n);  // sign-extend
    return make_int(static_cast<int64_t>(bits));
  }

  std::string line() {
    const uint8_t* begin = bytes_.data + pos_;
    const void* end = std::memchr(begin, '\n', bytes_.size - pos_);
    if (!end) fail("truncated pickle (GLOBAL name without newline)");
    const size_t n = static_cast<const uint8_t*>(end) - begin;
    take(n + 1);
    return std::string(reinterpret_cast<const char*>(begin), n);
  }

  // ---- the stack ----
  void push(ValuePtr v) { stack_.push_back(v); }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  ValuePtr pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_n(size_t n) {
    if (stack_.size() < floor() + n) fail("stack underflow");
    std::vector<ValuePtr> items(stack_.end() - n, stack_.end());
    stack_.resize(stack_.size() - n);
    return items;
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + mark, stack_.end());
    stack_.resize(mark);
    return items;
  }
  // The list or dict an APPEND or SETITEM adds to; a placeholder takes
  // them too (a pickled list or dict subclass, such as yacs's CfgNode).
  Value& expect_top(Value::Kind kind, const char* op) {
    ValuePtr v = top();
    if (v->kind != kind && v->kind != Value::Kind::Object)
      fail(std::string(op) + " on a " + kind_name(v->kind) + ", expected a " + kind_name(kind));
    return *v;
  }
  ValuePtr memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " read before written");
    return it->second;
  }

  // ---- values ----
  ValuePtr make_value(Value::Kind kind) {
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }
  ValuePtr make_bool(bool b) {
    auto v = make_value(Value::Kind::Bool);
    v->integer = b;
    return v;
  }
  ValuePtr make_int(int64_t i) {
    auto v = make_value(Value::Kind::Int);
    v->integer = i;
    return v;
  }
  ValuePtr make_string(uint64_t length, Value::Kind kind = Value::Kind::String) {
    const uint8_t* p = take(length);
    auto v = make_value(kind);
    v->text.assign(reinterpret_cast<const char*>(p), length);
    return v;
  }
  ValuePtr make_bytes(uint64_t length) { return make_string(length, Value::Kind::Bytes); }
  ValuePtr make_object(const std::string& class_name, ValuePtr args) {
    auto v = make_value(Value::Kind::Object);
    v->text = class_name;
    v->args = args;
    return v;
  }
  ValuePtr make_tuple(std::vector<ValuePtr> items) {
    auto v = make_value(Value::Kind::Tuple);
    v->items = std::move(items);
    return v;
  }

  // Dict keys that are equal strings replace the earlier value, as in Python.
  void set_items(Value& dict, const std::vector<ValuePtr>& items) {
    if (items.size() % 2 != 0) fail("odd number of items for a dict");
    for (size_t i = 0; i < items.size(); i += 2) {
      const ValuePtr &key = items[i], &value = items[i + 1];
      bool replaced = false;
      if (key->kind == Value::Kind::String)
        for (auto& entry : dict.entries)
          if (entry.first->kind == Value::Kind::String && entry.first->text == key->text) {
            entry.second = value;
            replaced = true;
          }
      if (!replaced) dict.entries.emplace_back(key, value);
    }
  }

  // A name only: nothing is imported or looked up.
  ValuePtr make_global(const std::string& module, const std::string& name) {
    auto v = make_value(Value::Kind::Global);
    v->text = module + "." + name;
    v->allowed = find_allowed_global(v->text);
    return v;
  }

  int64_t expect_int(const ValuePtr& v, const std::string& what) {
    if (v->kind != Value::Kind::Int) fail(what + " must be an int, got a " + kind_name(v->kind));
    return v->integer;
  }

  Shape int_tuple(const ValuePtr& v, const char* what) {
    if (v->kind != Value::Kind::Tuple)
      fail(std::string(what) + " must be a tuple, got a " + kind_name(v->kind));
    Shape out;
    for (const ValuePtr& item : v->items) {
      int64_t i = expect_int(item, what);
      if (i < 0) fail(std::string(what) + " has a negative entry");
      out.push_back(i);
    }
    return out;
  }

  ValuePtr call(const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind == Value::Kind::Object ||
        (callable->kind == Value::Kind::Global && !callable->allowed))
      return make_object(callable->text, args);
    if (callable->kind != Value::Kind::Global)
      fail(std::string("call of a ") + kind_name(callable->kind) + ", not of a global");
    if (args->kind != Value::Kind::Tuple)
      fail("arguments of '" + callable->text + "' are a " + kind_name(args->kind) +
           ", not a tuple");
    const std::vector<ValuePtr>& a = args->items;
    switch (callable->allowed->callable) {
      case Callable::OrderedDict:
        if (!a.empty()) fail("collections.OrderedDict called with arguments");
        return make_value(Value::Kind::Dict);
      case Callable::RebuildTensorV2: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.size() != 6 && a.size() != 7)
          fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(a.size()));
        if (a[0]->kind != Value::Kind::Storage)
          fail(std::string("_rebuild_tensor_v2 storage is a ") + kind_name(a[0]->kind));
        auto t = make_value(Value::Kind::Tensor);
        t->storage = a[0]->storage;
        t->offset = expect_int(a[1], "storage offset");
        if (t->offset < 0) fail("negative storage offset");
        t->size = int_tuple(a[2], "tensor size");
        t->stride = int_tuple(a[3], "tensor stride");
        if (t->size.size() != t->stride.size())
          fail("tensor size " + shape_str(t->size) + " and stride " + shape_str(t->stride) +
               " differ in rank");
        return t;
      }
      case Callable::RebuildParameter:  // (data, requires_grad, backward_hooks)
        if (a.size() != 3 || a[0]->kind != Value::Kind::Tensor)
          fail("_rebuild_parameter expects (tensor, requires_grad, backward_hooks)");
        return a[0];
    }
    fail("'" + callable->text + "' cannot be called");
  }

  // A placeholder keeps its state as data. OrderedDict attributes (a state
  // dict's `_metadata` with module versions) carry nothing packptq needs;
  // anything else has no business being built.
  void build(const ValuePtr& object, const ValuePtr& state) {
    if (object->kind == Value::Kind::Object) {
      object->state = state;
      return;
    }
    if (object->kind != Value::Kind::Dict)
      fail(std::string("BUILD on a ") + kind_name(object->kind) +
           " (only OrderedDict attributes such as _metadata and placeholders' state are "
           "accepted)");
    if (state->kind != Value::Kind::Dict && state->kind != Value::Kind::None)
      fail(std::string("BUILD state of a dict is a ") + kind_name(state->kind));
  }

  // torch.save's persistent id: ('storage', storage_type, key, location,
  // numel), with a sixth entry in the legacy format: a view of another
  // storage, always None since PyTorch 0.4.
  ValuePtr persistent_load(const ValuePtr& pid) {
    const auto& p = pid->items;
    if (pid->kind != Value::Kind::Tuple || (p.size() != 5 && p.size() != 6) ||
        p[0]->kind != Value::Kind::String || p[0]->text != "storage" ||
        p[1]->kind != Value::Kind::Global || p[2]->kind != Value::Kind::String ||
        p[4]->kind != Value::Kind::Int)
      fail("persistent id is not ('storage', storage_type, key, location, numel)");
    if (p.size() == 6 && p[5]->kind != Value::Kind::None)
      fail("storage '" + p[2]->text + "' is a view of another storage (files of PyTorch < 0.4 "
           "are not supported)");
    const std::string& type_name = p[1]->text;
    const StorageType* type = find_storage_type(type_name);
    const bool torch_storage = type_name.rfind("torch.", 0) == 0 && type_name.size() > 13 &&
                               type_name.compare(type_name.size() - 7, 7, "Storage") == 0;
    if (!type && !torch_storage)
      fail("persistent id names '" + type_name + "', not a storage type");
    if (p[4]->integer < 0) fail("negative storage size");
    auto v = make_value(Value::Kind::Storage);
    v->storage = StorageRef{p[2]->text, type_name, type, p[4]->integer};
    storages_.emplace(v->storage.key, v->storage);
    return v;
  }

  const std::string& path_;
  std::string record_;  // the pickle's name in messages
  const ByteView bytes_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<std::unique_ptr<Value>> arena_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;  // stack sizes at each MARK
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::map<std::string, StorageRef> storages_;
};

// ---------------------------------------------------------------------------
// From the unpickled object to tensors

constexpr int kMaxWrapperDepth = 8;  // also stops a self-referencing pickle
constexpr int kMaxDictsSearched = 4096;  // and one whose wrappers share dicts many ways

// Keys under which training scripts keep a state dict, at any depth; at the
// top level, every entry that is a dict is searched.
const char* const kWrapperKeys[] = {"state_dict",     "model",     "model_state",
                                    "model_state_dict", "state_dict_ema", "model_ema"};

bool is_wrapper_key(const std::string& key) {
  for (const char* wrapper : kWrapperKeys)
    if (key == wrapper) return true;
  return false;
}

bool has_tensor_values(const Value& dict) {
  for (const auto& entry : dict.entries)
    if (entry.second->kind == Value::Kind::Tensor) return true;
  return false;
}

// A dict of tensors in the pickled object and where it was found.
struct FoundStateDict {
  StateDictEntry entry;
  const Value* dict;
};

// The names state_dict_tensors() gives the tensors of `dict`.
std::vector<std::string> tensor_names(const Value& dict) {
  TensorMap names;
  for (const auto& [key, value] : dict.entries)
    if (key->kind == Value::Kind::String && value->kind == Value::Kind::Tensor)
      names.emplace(key->text, Tensor());
  std::vector<std::string> out;
  for (const auto& [name, unused] : strip_module_prefix(std::move(names))) out.push_back(name);
  return out;
}

void search_state_dicts(const std::string& path, const Value& dict, const std::string& entry,
                        bool ema, int depth, int& searched, std::vector<FoundStateDict>& found) {
  if (++searched > kMaxDictsSearched)
    throw_checkpoint_error(path, "more than " + std::to_string(kMaxDictsSearched) +
                                     " nested dicts to search for a state dict");
  auto is_dict = [&](const FoundStateDict& f) { return f.dict == &dict; };
  if (has_tensor_values(dict) && std::none_of(found.begin(), found.end(), is_dict))
    found.push_back({StateDictEntry{entry, tensor_names(dict), ema}, &dict});
  for (const auto& [key, value] : dict.entries) {
    if (key->kind != Value::Kind::String || value->kind != Value::Kind::Dict) continue;
    if (depth > 0 && !is_wrapper_key(key->text)) continue;
    if (depth == kMaxWrapperDepth)
      throw_checkpoint_error(path, "state dict wrappers nested deeper than " +
                                       std::to_string(kMaxWrapperDepth) + " levels");
    search_state_dicts(path, *value, entry.empty() ? key->text : entry + "." + key->text,
                       ema || is_ema_key(key->text), depth + 1, searched, found);
  }
}

// Every dict of tensors that is the pickled object, one of its entries or
// under a wrapper key, in the file's order. Throws when there is none.
std::vector<FoundStateDict> find_state_dicts(const std::string& path, const Value& root) {
  if (root.kind != Value::Kind::Dict)
    throw_checkpoint_error(path, "the pickled object is " + describe(root) +
                                     ", not a state dict");
  std::vector<FoundStateDict> found;
  int searched = 0;
  search_state_dicts(path, root, "", false, 0, searched, found);
  if (found.empty()) {
    std::string wrappers;
    for (const char* wrapper : kWrapperKeys)
      wrappers += std::string(wrappers.empty() ? "'" : ", '") + wrapper + "'";
    throw_checkpoint_error(path, "no tensors found: the pickled dict is not a state dict and "
                                 "holds none among its entries or under " + wrappers);
  }
  return found;
}

// Storage bytes by key, fetched once each (tensors may share a storage).
class StorageReader {
 public:
  // fetch(key, tensor, owned) returns the storage's bytes, read into `owned`
  // unless they are in memory already, or throws naming what is missing.
  using Fetch =
      std::function<ByteView(const std::string&, const std::string&, std::vector<uint8_t>&)>;
  StorageReader(const std::string& path, Fetch fetch) : path_(path), fetch_(std::move(fetch)) {}

  // Each reference to a storage is checked against its bytes: two persistent
  // ids may name the same key with different element counts or types.
  ByteView bytes(const StorageRef& storage, const std::string& tensor) {
    auto it = cache_.find(storage.key);
    if (it == cache_.end()) {
      Entry entry;
      entry.view = fetch_(storage.key, tensor, entry.owned);
      // Moving the vector keeps its buffer, so a view of `owned` stays valid.
      it = cache_.emplace(storage.key, std::move(entry)).first;
    }
    const ByteView view = it->second.view;
    const size_t element = storage.type->element_size;
    if (static_cast<uint64_t>(storage.numel) > view.size / element)
      throw_checkpoint_error(path_, "storage '" + storage.key + "' has " +
                                        std::to_string(view.size) +
                                        " bytes, too small for its " +
                                        std::to_string(storage.numel) + " " +
                                        stored_dtype_name(storage.type->dtype) + " elements");
    return view;
  }
  // Frees a storage read into memory once no tensor needs it any more.
  void release(const std::string& key) { cache_.erase(key); }

 private:
  struct Entry {
    std::vector<uint8_t> owned;
    ByteView view;
  };
  const std::string& path_;
  Fetch fetch_;
  std::map<std::string, Entry> cache_;
};

Tensor materialize(const std::string& path, StorageReader& reader, const std::string& name,
                   const Value& t) {
  if (!t.storage.type || !t.storage.type->loadable)
    throw_checkpoint_error(path, "tensor '" + name + "': unsupported storage type '" +
                                     t.storage.type_name +
                                     "' (supported: Float, Half, BFloat16, Double, Long and Int "
                                     "storages)");
  const ByteView bytes = reader.bytes(t.storage, name);
  const std::string view = "size " + shape_str(t.size) + ", stride " + shape_str(t.stride) +
                           ", storage offset " + std::to_string(t.offset);
  // Last element read: offset + sum (size_d - 1) * stride_d (sizes, strides >= 0).
  int64_t numel = 1, last = t.offset;
  bool overflow = false;
  for (size_t d = 0; d < t.size.size(); ++d) {
    overflow |= __builtin_mul_overflow(numel, t.size[d], &numel);
    int64_t reach = 0;
    if (t.size[d] > 0) {
      overflow |= __builtin_mul_overflow(t.size[d] - 1, t.stride[d], &reach);
      overflow |= __builtin_add_overflow(last, reach, &last);
    }
  }
  if (overflow) throw_checkpoint_error(path, "tensor '" + name + "' (" + view + ") is too large");
  if (numel > 0 && last >= t.storage.numel)
    throw_checkpoint_error(path, "storage '" + t.storage.key + "' too small for tensor '" + name +
                                     "' (" + view + "): it reads element " + std::to_string(last) +
                                     " of " + std::to_string(t.storage.numel));
  return decode_strided(bytes.data, t.storage.type->dtype, t.size, t.stride, t.offset);
}

// "<archive>/data.pkl": torch.save names the top folder after the file.
std::string find_pickle_record(const std::string& path, const ZipArchive& archive) {
  static const std::string suffix = "/data.pkl";
  for (const std::string& name : archive.names())
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        name.find('/') == name.size() - suffix.size())
      return name;
  throw_checkpoint_error(path, "a zip archive without '<name>/data.pkl': not a torch.save "
                               "checkpoint");
}

// The state dict's tensors, materialized from their storages. Each storage
// is released after its last tensor, so loading needs about the tensors'
// size, not twice it.
TensorMap state_dict_tensors(const std::string& path, const Value& state, StorageReader& reader) {
  auto is_tensor = [](const auto& entry) {
    return entry.first->kind == Value::Kind::String && entry.second->kind == Value::Kind::Tensor;
  };
  std::map<std::string, int> uses;
  for (const auto& entry : state.entries)
    if (is_tensor(entry)) ++uses[entry.second->storage.key];
  TensorMap tensors;
  for (const auto& entry : state.entries) {
    if (!is_tensor(entry)) continue;
    const Value& tensor = *entry.second;
    tensors[entry.first->text] = materialize(path, reader, entry.first->text, tensor);
    if (--uses[tensor.storage.key] == 0) reader.release(tensor.storage.key);
  }
  return strip_module_prefix(std::move(tensors));
}

// A file mapped read-only: the legacy format's storages are decoded in
// place, so loading holds the tensors and no second copy of the file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_checkpoint_error(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat info {};
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      close(fd);
      throw_checkpoint_error(path, "not a regular file");
    }
    size_ = static_cast<size_t>(info.st_size);
    void* mapped = size_ > 0 ? mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
    const int error = errno;
    close(fd);
    if (mapped == MAP_FAILED)
      throw_checkpoint_error(path, std::string("cannot map: ") + std::strerror(error));
    data_ = static_cast<const uint8_t*>(mapped);
  }
  ~MappedFile() {
    if (data_) munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ByteView bytes() const { return {data_, size_}; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The legacy format opens with pickle.dump(0x1950a86a20f9469cfc6c) at any
// protocol >= 2: PROTO n, an optional FRAME, LONG1 of ten bytes, STOP.
// Returns the offset after it, or 0 when the file does not start so.
size_t legacy_magic_end(ByteView bytes) {
  static const uint8_t kMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                   0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
  if (bytes.size < 2 || bytes.data[0] != 0x80 || bytes.data[1] < 2 || bytes.data[1] > 5) return 0;
  size_t pos = 2;
  if (bytes.size > pos && bytes.data[pos] == 0x95) pos += 9;  // FRAME and its 8-byte length
  if (bytes.size < pos + sizeof kMagic || std::memcmp(bytes.data + pos, kMagic, sizeof kMagic))
    return 0;
  return pos + sizeof kMagic;
}

// A torch.save zip archive. The archive stays open and the unpickled object
// in memory, so that any of its state dicts can be loaded.
class ZipCheckpoint : public Checkpoint {
 public:
  explicit ZipCheckpoint(const std::string& path)
      : Checkpoint(path), archive_(path_), record_(find_pickle_record(path_, archive_)) {
    prefix_ = record_.substr(0, record_.size() - std::strlen("data.pkl"));
    if (archive_.contains(prefix_ + "byteorder")) {
      std::vector<uint8_t> order = archive_.read(prefix_ + "byteorder");
      if (std::string(order.begin(), order.end()) != "little")
        throw_checkpoint_error(path_, "big-endian storages are not supported");
    }
    pickle_ = archive_.read(record_);
    unpickler_ = std::make_unique<Unpickler>(path_, record_, ByteView(pickle_));
    found_ = find_state_dicts(path_, unpickler_->run());
    for (const FoundStateDict& f : found_) state_dicts_.push_back(f.entry);
  }

  TensorMap load(size_t index) const override {
    StorageReader reader(path_, [&](const std::string& key, const std::string& tensor,
                                    std::vector<uint8_t>& owned) {
      const std::string storage_record = prefix_ + "data/" + key;
      if (!archive_.contains(storage_record))
        throw_checkpoint_error(path_, "storage key '" + key + "' of tensor '" + tensor +
                                          "' missing: no record '" + storage_record +
                                          "' in the archive");
      owned = archive_.read(storage_record);
      return ByteView(owned);
    });
    return state_dict_tensors(path_, *found_.at(index).dict, reader);
  }

 private:
  ZipArchive archive_;
  std::string record_, prefix_;
  std::vector<uint8_t> pickle_;
  std::unique_ptr<Unpickler> unpickler_;  // owns the Values found_ points to
  std::vector<FoundStateDict> found_;
};

// A legacy torch.save file, mapped; its storages are decoded in place.
class LegacyCheckpoint : public Checkpoint {
 public:
  explicit LegacyCheckpoint(const std::string& path) : Checkpoint(path), file_(path_) {
    const ByteView bytes = file_.bytes();
    size_t pos = legacy_magic_end(bytes);
    if (pos == 0)
      throw_checkpoint_error(path_, "does not start with the magic number of a legacy "
                                    "torch.save file");
    Unpickler version(path_, "protocol version", bytes, pos);
    const Value& protocol = version.run();
    if (protocol.kind != Value::Kind::Int || protocol.integer != 1001)
      throw_checkpoint_error(path_, "legacy torch.save protocol version is not 1001");
    Unpickler sys_info(path_, "sys_info", bytes, version.end());
    const Value& info = sys_info.run();
    if (info.kind != Value::Kind::Dict)
      throw_checkpoint_error(path_, "legacy torch.save sys_info is not a dict");
    for (const auto& [key, value] : info.entries)
      if (key->kind == Value::Kind::String && key->text == "little_endian" &&
          !(value->kind == Value::Kind::Bool && value->integer))
        throw_checkpoint_error(path_, "big-endian storages are not supported");

    object_ = std::make_unique<Unpickler>(path_, "data", bytes, sys_info.end());
    found_ = find_state_dicts(path_, object_->run());
    for (const FoundStateDict& f : found_) state_dicts_.push_back(f.entry);

    // Then the sorted list of storage keys and, in its order, each storage:
    // its element count as an int64, then its bytes.
    Unpickler key_list(path_, "storage keys", bytes, object_->end());
    const Value& keys = key_list.run();
    if (keys.kind != Value::Kind::List)
      throw_checkpoint_error(path_, "the legacy storage key list is not a list");
    pos = key_list.end();
    for (const ValuePtr& key : keys.items) {
      if (key->kind != Value::Kind::String)
        throw_checkpoint_error(path_, "a legacy storage key is not a string");
      auto ref = object_->storages().find(key->text);
      if (ref == object_->storages().end())
        throw_checkpoint_error(path_, "storage '" + key->text + "' is listed but never used, so "
                                      "its element type is unknown");
      const StorageRef& storage = ref->second;
      if (!storage.type)
        throw_checkpoint_error(path_, "unsupported storage type '" + storage.type_name +
                                          "' of storage '" + key->text +
                                          "': its size in the file is unknown");
      int64_t numel = 0;
      if (bytes.size - pos < sizeof numel)
        throw_checkpoint_error(path_, "truncated: storage '" + key->text + "' has no size");
      std::memcpy(&numel, bytes.data + pos, sizeof numel);
      pos += sizeof numel;
      const size_t element = storage.type->element_size;
      if (numel != storage.numel)
        throw_checkpoint_error(path_, "storage '" + key->text + "' holds " +
                                          std::to_string(numel) +
                                          " elements, its persistent id says " +
                                          std::to_string(storage.numel));
      if (static_cast<uint64_t>(numel) > (bytes.size - pos) / element)
        throw_checkpoint_error(path_, "truncated: storage '" + key->text + "' needs " +
                                          std::to_string(numel) + " " +
                                          (storage.type->loadable
                                               ? stored_dtype_name(storage.type->dtype)
                                               : storage.type_name.c_str()) +
                                          " elements, the file ends before");
      spans_[key->text] = {pos, static_cast<size_t>(numel) * element};
      pos += static_cast<size_t>(numel) * element;
    }
  }

  TensorMap load(size_t index) const override {
    const ByteView bytes = file_.bytes();
    StorageReader reader(path_, [&](const std::string& key, const std::string& tensor,
                                    std::vector<uint8_t>&) {
      auto span = spans_.find(key);
      if (span == spans_.end())
        throw_checkpoint_error(path_, "storage key '" + key + "' of tensor '" + tensor +
                                          "' missing from the file's storage list");
      return ByteView(bytes.data + span->second.first, span->second.second);
    });
    return state_dict_tensors(path_, *found_.at(index).dict, reader);
  }

 private:
  MappedFile file_;
  std::unique_ptr<Unpickler> object_;  // owns the Values found_ points to
  std::vector<FoundStateDict> found_;
  std::map<std::string, std::pair<size_t, size_t>> spans_;  // key -> (offset, bytes)
};

}  // namespace

std::unique_ptr<Checkpoint> open_torch_checkpoint(const std::string& path) {
  return std::make_unique<ZipCheckpoint>(path);
}

std::unique_ptr<Checkpoint> open_legacy_torch_checkpoint(const std::string& path) {
  return std::make_unique<LegacyCheckpoint>(path);
}

TensorMap load_torch_checkpoint(const std::string& path) {
  const std::unique_ptr<Checkpoint> checkpoint = open_torch_checkpoint(path);
  return checkpoint->load(default_state_dict(checkpoint->state_dicts()));
}

TensorMap load_legacy_torch_checkpoint(const std::string& path) {
  const std::unique_ptr<Checkpoint> checkpoint = open_legacy_torch_checkpoint(path);
  return checkpoint->load(default_state_dict(checkpoint->state_dicts()));
}

}  // namespace pk
