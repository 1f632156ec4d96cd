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
#include <string>

#include "engine/tensor.h"

namespace pk {

// Parameter and buffer name -> tensor (CPU, float32 or int64), sorted by name.
using TensorMap = std::map<std::string, Tensor>;

// Loads the state dict of a checkpoint, choosing the reader by the file's
// first bytes: "PK\x03\x04" is a torch.save zip, a pickle's PROTO opcode
// (0x80) a legacy torch.save file, an 8-byte length followed by '{' is
// safetensors. Wrappers such as {'model': state_dict} are unwrapped
// and a "module." prefix on every key (DataParallel) is removed.
TensorMap load_checkpoint(const std::string& path);

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
