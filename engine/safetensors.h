// safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3],
//    "data_offsets": [begin, end]}, ...}
// then the raw little-endian tensor bytes; offsets are relative to the byte
// after the header.
#pragma once

#include <map>
#include <set>
#include <string>

#include "engine/checkpoint.h"

namespace pk {

// Reads every tensor of the file, exactly as stored (no unwrapping): F32,
// F16, BF16 and F64 become float32 tensors, I64, I32 and U8 int64 tensors. The
// file is memory-mapped and each tensor copied out; the header is checked
// (JSON, dtypes, shapes, data_offsets inside the file, matching
// shape x dtype size, no two tensors overlapping) before anything is read.
TensorMap load_safetensors(const std::string& path);

// The "__metadata__" string map of the file's header (empty when absent).
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

// Writes float32 and int64 tensors (from any device) as F32 and I64, in name
// order, with the header padded with spaces so that the data starts at a
// multiple of 8 bytes. The int64 tensors named in `as_u8` are stored as U8
// (one byte per element, e.g. quantized weight codes); each of their values
// must lie in [0, 255]. The file is written under a temporary name in the
// same directory and renamed at the end, so a failed save leaves no partial
// file behind (and an existing file at `path` untouched).
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      const std::set<std::string>& as_u8 = {});

}  // namespace pk
