// PyTorch checkpoints written by torch.save, read without Python: the zip
// format (PyTorch >= 1.6) and the legacy format before it.
//
// The archive holds <name>/data.pkl (the pickled object), <name>/data/<key>
// (raw little-endian storage bytes) and <name>/version. A legacy file is one
// stream: pickles of a magic number, the protocol version (1001) and
// sys_info, the pickled object, the sorted list of storage keys, then each
// storage as an int64 element count and its bytes. The pickled object goes
// through a restricted unpickler: it understands the pickle opcodes a state
// dict uses and knows exactly these globals:
//   collections.OrderedDict, torch._utils._rebuild_tensor_v2,
//   torch._utils._rebuild_parameter, and the storage types
//   torch.{Float,Half,BFloat16,Double,Long,Int}Storage.
// Any other global (os.system, builtins.eval, torch.storage._load_from_bytes,
// a pickled nn.Module class, ...) is refused with an error naming it and the
// file; nothing from the file is ever executed.
#pragma once

#include <string>

#include "engine/checkpoint.h"

namespace pk {

// Loads the state dict of a torch.save checkpoint. The pickled object may be
// the state dict itself (an OrderedDict, its `_metadata` attribute ignored)
// or a dict wrapping it under 'model', 'state_dict', 'model_state_dict' or
// 'model_state' (pycls; nested wrappers are followed); non-tensor entries (epoch, best_acc1, ...)
// are skipped, a "module." prefix on every key is removed. Tensors are
// materialized contiguous from their (storage, offset, size, stride) views:
// Float/Half/BFloat16/Double storages load as float32, Long/Int as int64.
TensorMap load_torch_checkpoint(const std::string& path);

// The same for a legacy (pre-zip) torch.save file, as PyTorch 0.4 to 1.5
// wrote them and later versions do with _use_new_zipfile_serialization=False.
TensorMap load_legacy_torch_checkpoint(const std::string& path);

}  // namespace pk
