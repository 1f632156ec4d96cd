// PyTorch checkpoints written by torch.save, read without Python: the zip
// format (PyTorch >= 1.6) and the legacy format before it.
//
// The archive holds <name>/data.pkl (the pickled object), <name>/data/<key>
// (raw little-endian storage bytes) and <name>/version. A legacy file is one
// stream: pickles of a magic number, the protocol version (1001) and
// sys_info, the pickled object, the sorted list of storage keys, then each
// storage as an int64 element count and its bytes.
//
// Safety. The pickled object goes through a restricted unpickler that
// executes nothing from the file: it never imports a module or calls a
// function. It carries out exactly three calls, as data constructors of its
// own: collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
// torch._utils._rebuild_parameter; a storage is named by its class
// (torch.FloatStorage, ...) in a persistent id and read as bytes. Any other
// global (os.system, builtins.exec, argparse.Namespace, a numpy scalar, a
// pickled nn.Module class, ...) is kept as its name; calling, instantiating
// or building it (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, BUILD) gives an inert
// placeholder that records the name, the arguments and the state as data,
// and SETITEM(S) and APPEND(S) on it record the items. A placeholder can be
// held in containers and passed to further opcodes, giving placeholders; it
// is never run, and it is refused where a state dict needs real data (a
// tensor's storage, the pickled object itself). Memory grows linearly with
// the pickle's length (a few values per opcode at most), plus the tensors
// of the one state dict loaded, each checked against its storage's size.
// PyTorch's own weights_only loader refuses a file at the first global
// outside its allow-list; this one reads every file whose tensors are there,
// whatever else its training script pickled beside them.
#pragma once

#include <memory>
#include <string>

#include "engine/checkpoint.h"

namespace pk {

// Opens a torch.save zip checkpoint and lists its state dicts: the pickled
// object if it is a dict of tensors (an OrderedDict, its `_metadata`
// attribute ignored), each top-level entry that is one, and those under the
// keys training scripts use ('state_dict', 'model', 'model_state',
// 'model_state_dict', 'state_dict_ema', 'model_ema'; nested wrappers are
// followed). Non-tensor entries (epoch, best_acc1, ...) are skipped, a
// "module." prefix on every key is removed. Tensors are materialized
// contiguous from their (storage, offset, size, stride) views:
// Float/Half/BFloat16/Double storages load as float32, Long/Int as int64.
std::unique_ptr<Checkpoint> open_torch_checkpoint(const std::string& path);

// The same for a legacy (pre-zip) torch.save file, as PyTorch 0.4 to 1.5
// wrote them and later versions do with _use_new_zipfile_serialization=False.
std::unique_ptr<Checkpoint> open_legacy_torch_checkpoint(const std::string& path);

// The default state dict (default_state_dict()) of either kind of file.
TensorMap load_torch_checkpoint(const std::string& path);
TensorMap load_legacy_torch_checkpoint(const std::string& path);

}  // namespace pk
