"""Writes tests/data/training_checkpoints/: one narrow resnet18 (config.json)
saved the way common training scripts save their checkpoints, each layout in
torch.save's zip format and in its legacy format (_use_new_zipfile_serialization
=False), plus the bare state dict they all hold.

    bare.pth                         the state dict alone
    imagenet_example[_legacy].pth    PyTorch's examples/imagenet/main.py: 'state_dict'
                                     with DataParallel's "module." prefix, 'best_acc1'
                                     a 0-d tensor, SGD state with momentum buffers
    timm_train[_legacy].pth          timm's train.py (CheckpointSaver): 'args' an
                                     argparse.Namespace, 'state_dict_ema', 'amp_scaler'
    deit_main[_legacy].pth           DeiT's main.py: 'model', 'model_ema', 'args',
                                     'max_accuracy' a numpy.float64
    swin_main[_legacy].pth           Swin's main.py: 'model', 'config' a yacs CfgNode
                                     (a dict subclass), numpy.float64 accuracy, and
                                     the torch and numpy RNG states (a uint8 tensor,
                                     a numpy array) as resumable scripts save them
    half.pth, bfloat16_legacy.pth    the ImageNet example's layout with a float16 or
                                     bfloat16 state dict

Every weight is a bfloat16 value in float16's normal range, so the half and
bfloat16 copies hold exactly the bare state dict's values. The EMA copies
hold half of each float tensor, so the tests can tell them apart.
tests/test_checkpoint.cpp and tests/test_cli.cpp read these files; they
never need PyTorch.

    python3 tests/data/make_training_checkpoints.py   # PyTorch >= 1.6, numpy
"""
import argparse
import collections
import json
import os
import sys
import types

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_checkpoints")

# resnet18 at width 2 with one block per stage: 62 tensors, about 5000 weights.
CONFIG = {
    "model_name": "resnet18",
    "layers": [1, 1, 1, 1],
    "width": 2,
    "stage_planes": [2, 4, 8, 16],
    "num_classes": 10,
    "input_size": 32,
}


def resnet_shapes():
    shapes = collections.OrderedDict()

    def bn(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[prefix + "." + name] = (channels,)
        shapes[prefix + ".num_batches_tracked"] = ()

    planes = CONFIG["stage_planes"]
    shapes["conv1.weight"] = (planes[0], 3, 7, 7)
    bn("bn1", planes[0])
    inplanes = planes[0]
    for stage, width in enumerate(planes):
        block = "layer%d.0" % (stage + 1)
        shapes[block + ".conv1.weight"] = (width, inplanes, 3, 3)
        bn(block + ".bn1", width)
        shapes[block + ".conv2.weight"] = (width, width, 3, 3)
        bn(block + ".bn2", width)
        if stage > 0:
            shapes[block + ".downsample.0.weight"] = (width, inplanes, 1, 1)
            bn(block + ".downsample.1", width)
        inplanes = width
    shapes["fc.weight"] = (CONFIG["num_classes"], inplanes)
    shapes["fc.bias"] = (CONFIG["num_classes"],)
    return shapes


def bare_state_dict():
    generator = torch.Generator().manual_seed(26)
    state = collections.OrderedDict()
    for name, shape in resnet_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(2808)
            continue
        values = torch.randn(shape, generator=generator) * 0.5
        if name.endswith("running_var"):
            values = values.abs() + 0.5
        # Exact in bfloat16 and float16: no subnormals, 8 significant bits.
        values = torch.where(values.abs() < 2.0**-10, torch.zeros_like(values), values)
        state[name] = values.bfloat16().float()
    state._metadata = collections.OrderedDict([("", {"version": 1})])
    return state


def converted(state, convert):
    out = collections.OrderedDict((k, convert(v) if v.is_floating_point() else v.clone())
                                  for k, v in state.items())
    out._metadata = state._metadata
    return out


def parameters_of(state):
    return [torch.nn.Parameter(v.clone()) for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]


def sgd_state(state):
    params = parameters_of(state)
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    for p in params:
        p.grad = torch.ones_like(p) * 0.125
    optimizer.step()
    return optimizer.state_dict()


def adamw_state(state):  # not stepped yet: empty state, param_groups only
    return torch.optim.AdamW(parameters_of(state), lr=1e-3, weight_decay=0.05).state_dict()


def timm_args():
    return argparse.Namespace(
        model="resnet18", data_dir="/data/imagenet", epochs=300, lr=None, lr_base=0.1,
        opt="adamw", opt_betas=None, weight_decay=0.05, sched="cosine", decay_milestones=[90, 180, 270],
        mixup=0.8, cutmix=1.0, aa="rand-m9-mstd0.5-inc1", drop_path=0.1, input_size=None,
        mean=None, std=None, crop_pct=None, model_ema=True, model_ema_decay=0.9998, amp=True,
        seed=42, output="", experiment="", world_size=8, rank=0, distributed=True,
        prefetcher=True, device="cuda:0")


def deit_args():
    return argparse.Namespace(
        batch_size=128, epochs=300, model="deit_tiny_patch16_224", input_size=224, drop=0.0,
        drop_path=0.1, model_ema=True, model_ema_decay=0.99996, model_ema_force_cpu=False,
        opt="adamw", opt_eps=1e-8, opt_betas=None, clip_grad=None, momentum=0.9,
        weight_decay=0.05, sched="cosine", lr=5e-4, warmup_epochs=5, smoothing=0.1,
        repeated_aug=True, data_set="IMNET", output_dir="output", device="cuda", seed=0,
        resume="", start_epoch=0, eval=False, dist_eval=False, num_workers=10, pin_mem=True,
        world_size=8, dist_url="env://", distributed=True, gpu=0, rank=0)


def loss_scaler_state():  # torch.cuda.amp.GradScaler().state_dict()
    return {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
            "growth_interval": 2000, "_growth_tracker": 0}


def lr_scheduler_state():  # timm's CosineLRScheduler.state_dict()
    return {"t_initial": 300, "lr_min": 1e-5, "cycle_mul": 1.0, "cycle_decay": 0.1,
            "cycle_limit": 1, "warmup_t": 5, "warmup_lr_init": 1e-6, "warmup_prefix": False,
            "t_in_epochs": True, "param_group_field": "lr", "base_values": [5e-4],
            "warmup_steps": [9.98e-5]}


# yacs.config.CfgNode as Swin's main.py pickles its config: a dict subclass
# with a __dict__ of its own, named by its real module.
yacs = types.ModuleType("yacs")
yacs.config = types.ModuleType("yacs.config")
sys.modules["yacs"], sys.modules["yacs.config"] = yacs, yacs.config


class CfgNode(dict):
    def __init__(self, init_dict=None):
        super().__init__(init_dict or {})
        self.__dict__["_CfgNode__immutable"] = False
        self.__dict__["_CfgNode__deprecated_keys"] = set()


CfgNode.__module__ = "yacs.config"
yacs.config.CfgNode = CfgNode


def swin_config():
    return CfgNode({
        "BASE": [""],
        "DATA": CfgNode({"BATCH_SIZE": 128, "DATA_PATH": "/data/imagenet", "IMG_SIZE": 224,
                         "INTERPOLATION": "bicubic"}),
        "MODEL": CfgNode({"TYPE": "swin", "NAME": "swin_tiny_patch4_window7_224",
                          "DROP_PATH_RATE": 0.2, "NUM_CLASSES": 1000,
                          "SWIN": CfgNode({"EMBED_DIM": 96, "DEPTHS": [2, 2, 6, 2],
                                           "NUM_HEADS": [3, 6, 12, 24], "WINDOW_SIZE": 7})}),
        "TRAIN": CfgNode({"EPOCHS": 300, "BASE_LR": 1e-3, "WEIGHT_DECAY": 0.05,
                          "ACCUMULATION_STEPS": 1, "USE_CHECKPOINT": False}),
        "AMP_OPT_LEVEL": "O1", "OUTPUT": "output/swin_tiny", "SEED": 0,
    })


def layouts(state, ema):
    module_prefixed = collections.OrderedDict(("module." + k, v) for k, v in state.items())
    module_prefixed._metadata = collections.OrderedDict(
        ("module" + ("." + k if k else ""), v) for k, v in state._metadata.items())
    np.random.seed(0)
    return {
        "imagenet_example": {
            "epoch": 90, "arch": "resnet18", "state_dict": module_prefixed,
            "best_acc1": torch.tensor(71.25), "optimizer": sgd_state(state),
        },
        "timm_train": {
            "epoch": 299, "arch": "resnet18", "state_dict": state,
            "optimizer": adamw_state(state), "version": 2, "args": timm_args(),
            "amp_scaler": loss_scaler_state(), "state_dict_ema": ema, "metric": 71.25,
        },
        "deit_main": {
            "model": state, "optimizer": adamw_state(state),
            "lr_scheduler": lr_scheduler_state(), "epoch": 299, "model_ema": ema,
            "scaler": loss_scaler_state(), "args": deit_args(),
            "max_accuracy": np.float64(71.25),
        },
        "swin_main": {
            "model": state, "optimizer": adamw_state(state),
            "lr_scheduler": lr_scheduler_state(), "max_accuracy": np.float64(71.25),
            "epoch": 299, "config": swin_config(),
            "rng_state": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()},
        },
    }


def save(obj, name, legacy):
    path = os.path.join(OUT, name + ".pth")
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    print("%-28s %6d bytes" % (name + ".pth", os.path.getsize(path)))


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    torch.manual_seed(0)
    state = bare_state_dict()
    ema = converted(state, lambda v: v * 0.5)
    save(state, "bare", legacy=False)
    for name, checkpoint in layouts(state, ema).items():
        save(checkpoint, name, legacy=False)
        save(checkpoint, name + "_legacy", legacy=True)
    for name, dtype, legacy in (("half", torch.float16, False), ("bfloat16_legacy", torch.bfloat16, True)):
        low = converted(state, lambda v: v.to(dtype))
        checkpoint = layouts(low, converted(ema, lambda v: v.to(dtype)))["imagenet_example"]
        save(checkpoint, name, legacy=legacy)


if __name__ == "__main__":
    main()
