#!/usr/bin/python3
"""Writes the PIL reference outputs that tests/test_data.cpp compares against.

Run with Debian's python3 (python3-pil, python3-numpy), from anywhere:
    /usr/bin/python3 tests/data/make_pil_expected.py [--fixtures DIR]

It (re)creates, next to this script:
  synthetic_rgb.jpg / synthetic_gray.jpg / synthetic_cmyk.jpg
      deterministic test images (gradient + noise, PIL quality 90);
  expected/<case>.bin
      raw little-endian arrays: uint8 HWC RGB images, or float32 CHW tensors;
  manifest.json
      one entry per case: the source image, the operation and its arguments,
      dtype, shape and file.

Operations, each the Python reference the C++ pipeline must reproduce:
  decode           Image.open(path).convert('RGB')
  resize           img.resize((width, height), BILINEAR | BICUBIC)
  resize_shorter   torchvision Resize(size) on a PIL image
  center_crop      torchvision CenterCrop((height, width)) on a PIL image
  timm_eval        timm's eval transform: Resize(floor(input_size / crop_pct)),
                   CenterCrop(input_size), ToTensor, Normalize (float32)
The script also asserts that its timm_eval reproduces the `input` of
models/resnet18_w16/golden.safetensors (made with torch) bit for bit; the C++
test compares its own pipeline with every fixture's golden input directly.
"""
import argparse
import json
import math
import struct
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

HERE = Path(__file__).resolve().parent
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def make_synthetic_images():
    """Gradients plus seeded noise, so every resampling tap matters."""
    rng = np.random.RandomState(0)
    h, w = 47, 61
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([255 * xx / (w - 1), 255 * yy / (h - 1),
                    127 + 120 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], axis=-1)
    rgb += rng.normal(0, 25, size=rgb.shape)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(
        HERE / "synthetic_rgb.jpg", quality=90)

    h, w = 19, 23
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    gray = 10 + 230 * (xx + yy) / (w + h - 2) + rng.normal(0, 20, size=(h, w))
    Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8), "L").save(
        HERE / "synthetic_gray.jpg", quality=90)

    h, w = 13, 17
    cmyk = rng.randint(0, 256, size=(h, w, 4)).astype(np.uint8)
    Image.fromarray(cmyk, "CMYK").save(HERE / "synthetic_cmyk.jpg", quality=90)


def decode(path):
    with Image.open(path) as img:
        return img.convert("RGB")


def resize_shorter(img, size, interpolation):
    """torchvision.transforms.functional.resize(img, size) for an int size."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), FILTERS[interpolation])


def center_crop(img, height, width):
    """torchvision CenterCrop for crops inside the image."""
    w, h = img.size
    assert height <= h and width <= w
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return img.crop((left, top, left + width, top + height))


def timm_eval(img, input_size, crop_pct, interpolation, mean, std):
    img = resize_shorter(img, math.floor(input_size / crop_pct), interpolation)
    img = center_crop(img, input_size, input_size)
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)  # ToTensor
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)   # Normalize
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def read_safetensors(path, name):
    blob = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])
    info = json.loads(blob[8:8 + header_len])[name]
    assert info["dtype"] == "F32"
    begin, end = info["data_offsets"]
    data = np.frombuffer(blob[8 + header_len + begin:8 + header_len + end], dtype="<f4")
    return data.reshape(info["shape"])


class Writer:
    def __init__(self, fixtures):
        self.fixtures = fixtures
        self.cases = []
        (HERE / "expected").mkdir(exist_ok=True)
        for old in (HERE / "expected").glob("*.bin"):
            old.unlink()

    def path_of(self, source):
        kind, rel = source
        return (self.fixtures if kind == "fixture" else HERE) / rel

    def add(self, name, source, op, array, **args):
        array = np.ascontiguousarray(array)
        dtype = {np.dtype(np.uint8): "u8", np.dtype(np.float32): "f32"}[array.dtype]
        file = f"expected/{name}.bin"
        (HERE / file).write_bytes(array.astype("<" + array.dtype.str[1:]).tobytes())
        entry = {"name": name, "op": op, "args": args, "dtype": dtype,
                 "shape": list(array.shape), "file": file}
        if isinstance(source, list):
            entry["sources"] = [{s[0]: s[1]} for s in source]
        else:
            entry["source"] = {source[0]: source[1]}
        self.cases.append(entry)

    def image_cases(self, tag, source, resizes, resize_to=(), crops=(), timm=()):
        img = decode(self.path_of(source))
        self.add(f"{tag}_decode", source, "decode", np.asarray(img))
        for size, interpolation in resizes:
            out = resize_shorter(img, size, interpolation)
            self.add(f"{tag}_shorter{size}_{interpolation}", source, "resize_shorter",
                     np.asarray(out), size=size, interpolation=interpolation)
        for width, height, interpolation in resize_to:
            out = img.resize((width, height), FILTERS[interpolation])
            self.add(f"{tag}_resize{width}x{height}_{interpolation}", source, "resize",
                     np.asarray(out), width=width, height=height, interpolation=interpolation)
        for height, width in crops:
            self.add(f"{tag}_crop{height}x{width}", source, "center_crop",
                     np.asarray(center_crop(img, height, width)), height=height, width=width)
        for cfg in timm:
            out = timm_eval(img, **cfg)
            self.add(f"{tag}_timm{cfg['input_size']}_{cfg['interpolation']}", source,
                     "timm_eval", out, **cfg)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixtures", type=Path, default=HERE.parents[2] / "shared" / "fixtures")
    fixtures = parser.parse_args().fixtures.resolve()

    make_synthetic_images()
    w = Writer(fixtures)
    both = ["bilinear", "bicubic"]
    imagenet = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    timm28 = dict(input_size=28, crop_pct=0.875, interpolation="bicubic", **imagenet)

    # Real 32x32 fixture images: down to 24 and up to 40.
    w.image_cases("tshirt19", ("fixture", "fashion32/val/00_tshirt_top/000019.jpg"),
                  [(s, i) for s in (24, 40) for i in both])
    w.image_cases("sneaker9", ("fixture", "fashion32/val/07_sneaker/000009.jpg"),
                  [(24, "bicubic"), (40, "bilinear")])
    # 61x47 4:2:0 JPEG: non-square shorter-side resizes, one-axis-up /
    # other-axis-down resizes, crops whose offsets hit round-half-to-even
    # both ways, and a timm transform with a real resize (47 -> 32).
    w.image_cases("synthetic", ("data", "synthetic_rgb.jpg"),
                  [(24, "bilinear"), (24, "bicubic"), (40, "bicubic")],
                  resize_to=[(33, 50, "bicubic"), (70, 20, "bilinear")],
                  crops=[(20, 25), (30, 30)], timm=[timm28])
    w.image_cases("gray", ("data", "synthetic_gray.jpg"), [(12, "bicubic")])
    w.image_cases("cmyk", ("data", "synthetic_cmyk.jpg"), [])

    # End to end: the golden input of models/resnet18_w16.
    model_dir = fixtures / "models" / "resnet18_w16"
    config = json.loads((model_dir / "config.json").read_text())
    cfg = {k: config[k] for k in ("input_size", "crop_pct", "interpolation", "mean", "std")}
    files = config["golden_input_files"]
    batch = np.stack([timm_eval(decode(fixtures / f), **cfg) for f in files])
    golden = read_safetensors(model_dir / "golden.safetensors", "input")
    diff = float(np.abs(batch - golden).max())
    print(f"PIL+numpy pipeline vs {model_dir.name}/golden.safetensors input: max |diff| {diff}")
    assert diff == 0.0, "the Python reference pipeline does not reproduce the golden input"
    # The C++ test compares its own pipeline with golden.safetensors directly,
    # for every fixture model; this check only guards the reference pipeline.

    manifest = {"generator": "tests/data/make_pil_expected.py",
                "pil_version": PIL.__version__, "numpy_version": np.__version__,
                "cases": w.cases}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"{len(w.cases)} cases, {total} bytes under {HERE}")


if __name__ == "__main__":
    main()
