"""Writes tests/data/legacy_checkpoint.pth: a checkpoint in torch.save's
legacy (pre-zip) format, as PyTorch before 1.6 wrote every file and later
versions write with _use_new_zipfile_serialization=False.

A training checkpoint around a DataParallel state dict: strided views that
share one storage, every storage type packptq reads, a parameter, the
state dict's _metadata, and an optimizer whose storage no tensor of the
state dict uses. tests/test_checkpoint.cpp knows the values.

    python3 tests/data/make_legacy_checkpoint.py   # PyTorch >= 1.6
"""
import collections
import os

import torch

base = torch.arange(12, dtype=torch.float32) * 0.5
state = collections.OrderedDict()
state["conv.weight"] = base.view(3, 4)
state["conv.weight_t"] = base.view(3, 4).t()  # the same storage, transposed
state["tail"] = base[8:]  # the same storage at offset 8
state["half"] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16)
state["bf"] = torch.tensor([1.0, -2.5], dtype=torch.bfloat16)
state["double"] = torch.tensor([0.1, -2.5], dtype=torch.float64)
state["idx"] = torch.tensor([-7, 123456], dtype=torch.int32)
state["bn.num_batches_tracked"] = torch.tensor(42)
state["param"] = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
state = collections.OrderedDict(("module." + k, v) for k, v in state.items())
state._metadata = collections.OrderedDict([("", {"version": 1})])

checkpoint = {
    "epoch": 90,
    "arch": "resnet18",
    "state_dict": state,
    "best_acc1": 71.25,
    "optimizer": {
        "state": {0: {"momentum_buffer": torch.full((5,), 9.0)}},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "params": [0]}],
    },
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy_checkpoint.pth")
torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
print(path, os.path.getsize(path), "bytes")
