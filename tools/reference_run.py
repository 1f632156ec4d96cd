#!/usr/bin/env python3
"""Runs the reference Pack-PTQ implementation (its main.py, unmodified) on a
fixture model on the CPU, so that packptq's figures can be set beside the
reference's own on the same machine, the same images and the same seed.
Developer-side only; packptq itself never uses Python.

Needs: PyTorch, torchvision, timm 1.0.9, loguru and tqdm importable, and a
checkout of the reference (github.com/VicLee-Worker/Pack-PTQ). Three things
differ from running its main.py as published, all outside its code:
- `.cuda()` is the identity, so it runs on the CPU;
- the model is the fixture's architecture (config.json) with the fixture's
  weights, instead of a downloaded ImageNet model;
- the calibration loader is built as the reference builds it (shuffled
  ImageFolder of train/, RandomResizedCrop to the input size and horizontal
  flips), or with --plain without the augmentation, which are the images
  packptq calibrates on by default; both it and val/ use the fixture's own
  mean and std (the reference normalizes with ImageNet's, the same for the
  deit, swin and CNN fixtures), and val/ is not resized (its images are
  already at the input size).
--rtn_only stops after quantizer initialization and prints the model's
top-1 on val/ (the rtn column of the quality table).

Usage: reference_run.py --reference DIR --fixture DIR [--plain] [--rtn_only]
         -- <the reference's flags: --dataset_path ... --model_name ... >
Writes the reference's log, inited_models/ and trained_models/ to the
current folder, as its main.py does.
"""
import argparse
import json
import os
import sys

import torch


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="checkout of the reference")
    parser.add_argument("--fixture", required=True, help="folder with config.json and model.pth")
    parser.add_argument("--plain", action="store_true", help="calibrate without augmentation")
    parser.add_argument("--rtn_only", action="store_true", help="stop after initialization")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("reference_flags", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.reference_flags[:1] == ["--"]:
        args.reference_flags = args.reference_flags[1:]
    return args


def fixture_model(config, weights_path):
    """The fixture's network as the reference's model zoo or timm defines it."""
    family = config["family"]
    if family == "vit":
        from timm.models.vision_transformer import VisionTransformer
        model = VisionTransformer(**config["timm_kwargs"])
    elif family == "swin":
        from timm.models.swin_transformer import SwinTransformer
        model = SwinTransformer(**config["timm_kwargs"])
    elif family == "mobilenetv2":
        from models.mobilenetv2 import mobilenetv2
        model = mobilenetv2(n_class=config["num_classes"], width_mult=config["width_mult"])
    else:
        # The reference's ResNet and RegNet fix their widths; the fixtures'
        # narrower ones need a modified class.
        sys.exit(f"reference_run.py: family {family!r} is not supported")
    state = torch.load(weights_path, map_location="cpu")
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and wrapper in state:
            state = state[wrapper]
    model.load_state_dict(state)
    return model


def loaders(config, plain, data_path, batch_size, workers):
    """The reference's build_ImageNet_data at the fixture's input size."""
    import torchvision.datasets as datasets
    import torchvision.transforms as transforms
    normalize = transforms.Normalize(mean=config["mean"], std=config["std"])
    augment = [] if plain else [transforms.RandomResizedCrop(config["input_size"]),
                                transforms.RandomHorizontalFlip()]
    train = datasets.ImageFolder(os.path.join(data_path, "train"),
                                 transforms.Compose(augment + [transforms.ToTensor(), normalize]))
    val = datasets.ImageFolder(os.path.join(data_path, "val"),
                               transforms.Compose([transforms.ToTensor(), normalize]))
    return (torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                        num_workers=workers, pin_memory=True),
            torch.utils.data.DataLoader(val, batch_size=batch_size, shuffle=False,
                                        num_workers=workers, pin_memory=True))


def main():
    args = parse()
    sys.path.insert(0, os.path.abspath(args.reference))
    torch.set_num_threads(args.threads)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    with open(os.path.join(args.fixture, "config.json")) as f:
        config = json.load(f)

    import utils.dataset
    import utils.initialize
    val_loader = []

    def build_data(data_path, batch_size, workers, **_):
        train, val = loaders(config, args.plain, data_path, batch_size, workers)
        val_loader.append(val)
        return train, val

    utils.dataset.build_ImageNet_data = build_data
    utils.initialize.create_base_model = (
        lambda model_name: fixture_model(config, os.path.join(args.fixture, "model.pth")))

    if args.rtn_only:
        initialize = utils.initialize.initialize_quantization_params

        def initialize_then_evaluate(model, calibration_data, batch_size):
            initialize(model, calibration_data, batch_size)
            correct = total = 0
            with torch.no_grad():
                for images, labels in val_loader[0]:
                    correct += (model(images).argmax(1) == labels).sum().item()
                    total += len(labels)
            print(f"rtn top-1 {100.0 * correct / total:.2f}", flush=True)
            sys.exit(0)

        utils.initialize.initialize_quantization_params = initialize_then_evaluate

    sys.argv = ["main.py"] + args.reference_flags
    import main as reference_main
    reference_main.main()


if __name__ == "__main__":
    main()
