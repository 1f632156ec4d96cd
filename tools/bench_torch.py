#!/usr/bin/env python3
"""The peer side of tools/bench_compare.sh: the same GEMM and conv2d shapes as
bench_kernels, timed with PyTorch on the CPU (Debian's python3-torch).
Developer-side only; packptq itself never uses Python.

Usage: bench_torch.py --threads N [--quick]
"""
import argparse
import time

import torch


def median_seconds(reps, f):
    f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps, batch = (3, 4) if args.quick else (7, 16)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, m, n, k in [("square 512", 512, 512, 512), ("square 1024", 1024, 1024, 1024),
                           ("resnet18 layer1 conv as GEMM", 64, 3136, 576)]:
        a, b = torch.rand(m, k) * 2 - 1, torch.rand(k, n) * 2 - 1
        s = median_seconds(reps, lambda: torch.mm(a, b))
        print(f"  {label:34s} {m:5d}x{n:5d}x{k:5d}  {s * 1e3:8.2f} ms  {2 * m * n * k / s * 1e-9:7.1f} GFLOP/s")
    for label, c, hw, o, kk, groups in [("64->64 3x3 at 56x56", 64, 56, 64, 3, 1),
                                         ("128->128 3x3 at 28x28", 128, 28, 128, 3, 1),
                                         ("depthwise 32ch 3x3 at 112x112", 32, 112, 32, 3, 32)]:
        x = (torch.rand(batch, c, hw, hw) * 2 - 1).requires_grad_(True)
        w = (torch.rand(o, c // groups, kk, kk) * 2 - 1).requires_grad_(True)
        y = torch.nn.functional.conv2d(x, w, padding=kk // 2, groups=groups)
        dy = torch.rand_like(y)
        flops = 2.0 * y.numel() * (c // groups) * kk * kk
        fwd = median_seconds(reps, lambda: torch.nn.functional.conv2d(x, w, padding=kk // 2, groups=groups))
        dx = median_seconds(reps, lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, padding=kk // 2, groups=groups))
        dw = median_seconds(reps, lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, padding=kk // 2, groups=groups))
        print(f"  {label:34s} forward {flops / fwd * 1e-9:7.1f}  backward data {flops / dx * 1e-9:7.1f}"
              f"  backward weight {flops / dw * 1e-9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
