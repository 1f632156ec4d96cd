#!/usr/bin/env python3
"""The peer side of tools/bench_compare.sh: the same GEMM and conv2d shapes as
bench_kernels, timed with PyTorch on the CPU (Debian's python3-torch), and
with --recon the reconstruction step of bench_recon written as the reference
implementation writes it in PyTorch eager (AdaRound weights recomputed from
floor(w / delta) each step, straight-through rounding of activations with a
learned scale, QDrop input mixing, Adam on alphas and scales, cosine decay).
Developer-side only; packptq itself never uses Python.

Usage: bench_torch.py --threads N [--quick] [--recon [--batch B] [--iterations N]]
"""
import argparse
import time

import torch
import torch.nn.functional as F

GAMMA, ZETA, BITS = -0.1, 1.1, 4
QMAX = 2 ** BITS - 1


def round_ste(x):
    return (x.round() - x).detach() + x


class ActQuant(torch.nn.Module):
    """Per-tensor fake quantizer with a learned scale (min-max initialized)."""

    def __init__(self, sample):
        super().__init__()
        lo, hi = min(sample.min().item(), 0.0), max(sample.max().item(), 0.0)
        delta = max((hi - lo) / QMAX, 1e-8)
        self.delta = torch.nn.Parameter(torch.tensor(delta))
        self.zero_point = torch.tensor(float(round(-lo / delta)))

    def forward(self, x):
        x_int = round_ste(x / self.delta) + self.zero_point
        return (torch.clamp(x_int, 0, QMAX) - self.zero_point) * self.delta


class AdaRound(torch.nn.Module):
    """Channel-wise soft AdaRound of a weight (the reference's AdaRoundQuantizer)."""

    def __init__(self, w):
        super().__init__()
        flat = w.detach().flatten(1)
        lo, hi = flat.min(1).values.clamp(max=0), flat.max(1).values.clamp(min=0)
        shape = (-1,) + (1,) * (w.dim() - 1)
        self.w = w.detach()
        self.delta = ((hi - lo) / QMAX).clamp(min=1e-8).view(shape)
        self.zero_point = (-lo / self.delta.flatten()).round().view(shape)
        rest = self.w / self.delta - torch.floor(self.w / self.delta)
        self.alpha = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))

    def h(self):
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def forward(self):
        x_int = torch.floor(self.w / self.delta) + self.h() + self.zero_point
        return (torch.clamp(x_int, 0, QMAX) - self.zero_point) * self.delta

    def round_loss(self, beta):
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()


class QuantConv(torch.nn.Module):
    def __init__(self, conv, sample):
        super().__init__()
        self.conv, self.weight, self.act = conv, AdaRound(conv.weight), ActQuant(sample)

    def forward(self, x):
        c = self.conv
        return F.conv2d(self.act(x), self.weight(), c.bias, c.stride, c.padding)


class QuantLinear(torch.nn.Module):
    def __init__(self, linear, sample):
        super().__init__()
        self.linear, self.weight, self.act = linear, AdaRound(linear.weight), ActQuant(sample)

    def forward(self, x):
        return F.linear(self.act(x), self.weight(), self.linear.bias)


class ResNetBlock(torch.nn.Module):
    """resnet18 layer1.0: two 3x3 convs with BatchNorm, identity shortcut."""

    def __init__(self, x):
        super().__init__()
        c = x.shape[1]
        conv1, conv2 = (torch.nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(2))
        self.bn1, self.bn2 = torch.nn.BatchNorm2d(c).eval(), torch.nn.BatchNorm2d(c).eval()
        with torch.no_grad():
            mid = F.relu(self.bn1(conv1(x)))
        self.conv1, self.conv2 = QuantConv(conv1, x), QuantConv(conv2, mid)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + x)


class Attention(torch.nn.Module):
    """Multi-head self-attention over [B, N, C] with quantized linears and
    both operands of each matmul quantized; `bias` is added to the logits."""

    def __init__(self, x, heads):
        super().__init__()
        b, n, c = x.shape
        self.heads, self.scale = heads, (c // heads) ** -0.5
        qkv, proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
        with torch.no_grad():
            q, k, v = qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            attn = (q * self.scale @ k.transpose(-2, -1)).softmax(-1)
            out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        self.q, self.k, self.attn, self.v = ActQuant(q), ActQuant(k), ActQuant(attn), ActQuant(v)
        self.qkv, self.proj = QuantLinear(qkv, x), QuantLinear(proj, out)

    def forward(self, x, bias=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        logits = self.q(q * self.scale) @ self.k(k).transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        out = self.attn(logits.softmax(-1)) @ self.v(v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(torch.nn.Module):
    def __init__(self, x):
        super().__init__()
        c = x.shape[-1]
        fc1, fc2 = torch.nn.Linear(c, 4 * c), torch.nn.Linear(4 * c, c)
        with torch.no_grad():
            hidden = F.gelu(fc1(x))
        self.fc1, self.fc2 = QuantLinear(fc1, x), QuantLinear(fc2, hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class DeiTBlock(torch.nn.Module):
    """deit_small blocks.0: pre-norm attention and MLP, 197 tokens of 384."""

    def __init__(self, x, heads=6):
        super().__init__()
        c = x.shape[-1]
        self.norm1, self.norm2 = torch.nn.LayerNorm(c, eps=1e-6), torch.nn.LayerNorm(c, eps=1e-6)
        with torch.no_grad():
            self.attn = Attention(self.norm1(x), heads)
            self.mlp = Mlp(self.norm2(x))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SwinBlock(torch.nn.Module):
    """swin_tiny layers.0.blocks.0: 7x7 window attention with relative
    position bias (no shift) on a 56x56 grid of 96 channels, then the MLP."""

    def __init__(self, x, heads=3, window=7):
        super().__init__()
        b, h, w, c = x.shape
        self.window, self.heads = window, heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
        self.table = torch.randn((2 * window - 1) ** 2, heads) * 0.02
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.index = rel[..., 0] * (2 * window - 1) + rel[..., 1]
        with torch.no_grad():
            self.attn = Attention(self.partition(self.norm1(x)), heads)
            self.mlp = Mlp(self.norm2(x))

    def partition(self, x):
        b, h, w, c = x.shape
        s = self.window
        return x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)

    def forward(self, x):
        b, h, w, c = x.shape
        s = self.window
        bias = self.table[self.index.flatten()].view(s * s, s * s, -1).permute(2, 0, 1)
        windows = self.attn(self.partition(self.norm1(x)), bias)
        y = windows.view(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        x = x + y
        return x + self.mlp(self.norm2(x))


def recon_step_ms(block, x_q, x_fp, iterations):
    """Milliseconds per reconstruction iteration (mean over `iterations` after two warm-up steps)."""
    with torch.no_grad():
        target = block(x_fp)
    alphas = [m.alpha for m in block.modules() if isinstance(m, AdaRound)]
    scales = [m.delta for m in block.modules() if isinstance(m, ActQuant)]
    opt_alpha, opt_scale = torch.optim.Adam(alphas, lr=3e-3), torch.optim.Adam(scales, lr=4e-5)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt_scale, T_max=iterations + 2, eta_min=0.0)
    rounding = [m for m in block.modules() if isinstance(m, AdaRound)]

    def step():
        x = torch.where(torch.rand_like(x_q) < 0.5, x_q, x_fp)
        out = block(x)
        rec = (out - target).pow(2).sum(1).mean()
        loss = rec + 0.01 * sum(m.round_loss(10.0) for m in rounding)
        opt_alpha.zero_grad()
        opt_scale.zero_grad()
        loss.backward()
        opt_alpha.step()
        opt_scale.step()
        schedule.step()

    step()
    step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations * 1e3


def bench_recon(batch, iterations):
    print(f"PyTorch {torch.__version__} reconstruction step, W4A4, {torch.get_num_threads()} threads")
    cases = [("resnet18", "layer1.0", ResNetBlock, (batch, 64, 56, 56)),
             ("deit_small", "blocks.0", DeiTBlock, (batch, 197, 384)),
             ("swin_tiny", "layers.0.blocks.0", SwinBlock, (batch, 56, 56, 96))]
    for model, unit, make, shape in cases:
        x_fp = torch.randn(shape)
        x_q = x_fp + 0.05 * torch.randn(shape)
        block = make(x_fp)
        ms = recon_step_ms(block, x_q, x_fp, iterations)
        print(f"  {model:12s} {unit:22s} batch {batch:3d}  {ms:8.1f} ms/iteration")


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
    parser.add_argument("--recon", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.recon:
        bench_recon(args.batch, args.iterations)
        return
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
