// Checkpoint files: one entry point that reads every format packptq accepts
// (safetensors, torch.save zip and legacy), plus the pieces both readers share.
//
// Nothing here runs Python or any code taken from a file: safetensors is a
// JSON header plus raw bytes, and torch checkpoints go through a restricted
// unpickler (torch_checkpoint.h). Errors are std::runtime_error messages that
// name the file and what is wrong with it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace pk {

// Parameter and buffer name -> tensor (CPU, float32 or int64), sorted by name.
using TensorMap = std::map<std::string, Tensor>;

// One dict of tensors in a checkpoint: the pickled object itself, or one a
// training script keeps under a key ('state_dict', 'model', 'model_ema', ...).
struct StateDictEntry {
  std::string entry;               // keys from the top, joined by '.'; "" for the top level
  std::vector<std::string> names;  // its tensors' names, sorted, "module." removed as below
  bool ema = false;                // an exponential moving average of the weights
  std::string describe() const;    // "'model_ema' (62 tensors)", "the top level (1 tensor)"
};

// A checkpoint file, read far enough to list its state dicts; each is
// materialized only when asked for, so that a training checkpoint's model
// and EMA copies are never in memory together.
class Checkpoint {
 public:
  virtual ~Checkpoint() = default;
  const std::string& path() const { return path_; }
  // Never empty, in the file's order. safetensors files hold one.
  const std::vector<StateDictEntry>& state_dicts() const { return state_dicts_; }
  // The tensors of state_dicts()[index].
  virtual TensorMap load(size_t index) const = 0;

 protected:
  explicit Checkpoint(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::vector<StateDictEntry> state_dicts_;
};

// Opens a checkpoint, choosing the reader by the file's first bytes:
// "PK\x03\x04" is a torch.save zip, a pickle's PROTO opcode (0x80) a legacy
// torch.save file, an 8-byte length followed by '{' is safetensors. A
// "module." prefix on every key of a state dict (DataParallel) is removed.
std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path);

// Without a network to fit: the state dict with the most tensors, an EMA
// copy only when there is nothing else, the earliest on a tie.
size_t default_state_dict(const std::vector<StateDictEntry>& state_dicts);

// The default state dict of the checkpoint at `path`.
TensorMap load_checkpoint(const std::string& path);

// Whether a wrapper key names an exponential moving average of the weights:
// one of its '_'-separated words is "ema" (state_dict_ema, model_ema, ...).
bool is_ema_key(const std::string& key);

// Removes a leading "module." from every key when every key has it.
TensorMap strip_module_prefix(TensorMap tensors);

// Throws std::runtime_error("checkpoint '<path>': <what>").
[[noreturn]] void throw_checkpoint_error(const std::string& path, const std::string& what);

// Element types as stored in checkpoint files. Floating types load as
// float32, integer types as int64 (packptq's two tensor dtypes).
enum class StoredDType { F16, BF16, F32, F64, I32, I64 };

const char* stored_dtype_name(StoredDType dtype);  // safetensors spelling: "F16", "I64", ...
size_t stored_dtype_size(StoredDType dtype);
DType loaded_dtype(StoredDType dtype);

float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);

// Decodes the elements of a (possibly non-contiguous) view into a new
// contiguous CPU tensor of loaded_dtype(dtype): element (i_0, ..., i_n) is
// read from element `offset + sum_d i_d * strides[d]` of `src`, a
// little-endian array of `dtype`. The caller has checked that every element
// read lies inside `src`.
Tensor decode_strided(const uint8_t* src, StoredDType dtype, const Shape& shape,
                      const Shape& strides, int64_t offset);

// Row-major strides of a contiguous tensor of `shape`, in elements.
Shape contiguous_strides(const Shape& shape);

}  // namespace pk
