#!/usr/bin/env python3
"""The peer side of tools/bench_compare.sh: the same GEMM and conv2d shapes as
bench_kernels, timed with PyTorch on the CPU (Debian's python3-torch), and
with --recon the reconstruction step of bench_recon written as the reference
implementation writes it in PyTorch eager (AdaRound weights recomputed from
floor(w / delta) each step, straight-through rounding of activations with a
learned scale, QDrop input mixing, Adam on alphas and scales, cosine decay),
for the same units in the same order, each given a random input of the
unit's input shape at 224 px. With --infer, FP32 inference of bench_infer's
models as torchvision builds them (python3-torchvision), eval mode under
torch.inference_mode(). Developer-side only; packptq itself never uses Python.

Usage: bench_torch.py --threads N [--quick]
                      [--recon [--batch B] [--iterations N] [--units MODEL:UNIT,...]]
                      [--infer [--batch B] [--repeats N] [--models a,b,...]]
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
        return F.conv2d(self.act(x), self.weight(), c.bias, c.stride, c.padding, c.dilation, c.groups)


class QuantLinear(torch.nn.Module):
    def __init__(self, linear, sample):
        super().__init__()
        self.linear, self.weight, self.act = linear, AdaRound(linear.weight), ActQuant(sample)

    def forward(self, x):
        return F.linear(self.act(x), self.weight(), self.linear.bias)


class ResNetBlock(torch.nn.Module):
    """torchvision's BasicBlock: two 3x3 convs with BatchNorm, the first with
    the block's stride; identity shortcut, or a quantized 1x1 conv with the
    stride + BatchNorm (downsample) when the shape changes. resnet18 layer1.0:
    64 -> 64 at 56x56; layer4.0: 256 -> 512, stride 2, at 14x14."""

    def __init__(self, x, planes=None, stride=1):
        super().__init__()
        c = x.shape[1]
        planes = planes or c
        conv1 = torch.nn.Conv2d(c, planes, 3, stride=stride, padding=1, bias=False)
        conv2 = torch.nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn1, self.bn2 = torch.nn.BatchNorm2d(planes).eval(), torch.nn.BatchNorm2d(planes).eval()
        with torch.no_grad():
            mid = F.relu(self.bn1(conv1(x)))
        self.conv1, self.conv2 = QuantConv(conv1, x), QuantConv(conv2, mid)
        self.downsample = None
        if stride != 1 or planes != c:
            down = torch.nn.Conv2d(c, planes, 1, stride=stride, bias=False)
            self.downsample, self.down_bn = QuantConv(down, x), torch.nn.BatchNorm2d(planes).eval()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        shortcut = x if self.downsample is None else self.down_bn(self.downsample(x))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


class ConvChain(torch.nn.Module):
    """Quantized convs, each followed by BatchNorm and, where `acts` says, an
    activation; each conv's activation quantizer starts from its float input."""

    def __init__(self, x, convs, acts):
        super().__init__()
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(c.out_channels).eval() for c in convs)
        self.acts, quantized = acts, []
        with torch.no_grad():
            for conv, bn, act in zip(convs, self.bns, acts):
                quantized.append(QuantConv(conv, x))
                x = bn(conv(x))
                x = act(x) if act else x
        self.convs = torch.nn.ModuleList(quantized)

    def forward(self, x):
        for conv, bn, act in zip(self.convs, self.bns, self.acts):
            x = bn(conv(x))
            x = act(x) if act else x
        return x


class InvertedResidual(torch.nn.Module):
    """mobilenetv2 features.2: expand 1x1 (16 -> 96), depthwise 3x3 with
    stride 2, project 1x1 (96 -> 24), BatchNorm after each and ReLU6 after the
    first two; no residual (stride 2), input 112x112."""

    def __init__(self, x, hidden=96, out=24, stride=2):
        super().__init__()
        c = x.shape[1]
        convs = [torch.nn.Conv2d(c, hidden, 1, bias=False),
                 torch.nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
                 torch.nn.Conv2d(hidden, out, 1, bias=False)]
        self.conv = ConvChain(x, convs, [F.relu6, F.relu6, None])
        self.residual = stride == 1 and c == out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class RegNetBlock(torch.nn.Module):
    """regnetx_600m s1.b1, pycls's ResBottleneckBlock: 1x1 (32 -> 48), 3x3
    with group width 24 (2 groups) and stride 2, 1x1 (48 -> 48), BatchNorm
    after each and ReLU after the first two; shortcut a quantized 1x1 conv
    with stride 2 + BatchNorm (proj); input the stem's output, 112x112."""

    def __init__(self, x, out=48, stride=2, group_width=24):
        super().__init__()
        c = x.shape[1]
        convs = [torch.nn.Conv2d(c, out, 1, bias=False),
                 torch.nn.Conv2d(out, out, 3, stride=stride, padding=1, groups=out // group_width, bias=False),
                 torch.nn.Conv2d(out, out, 1, bias=False)]
        self.proj = QuantConv(torch.nn.Conv2d(c, out, 1, stride=stride, bias=False), x)
        self.proj_bn = torch.nn.BatchNorm2d(out).eval()
        self.f = ConvChain(x, convs, [F.relu, F.relu, None])

    def forward(self, x):
        return F.relu(self.proj_bn(self.proj(x)) + self.f(x))


class Attention(torch.nn.Module):
    """Multi-head self-attention over [B, N, C] with quantized linears and
    both operands of each matmul quantized. The softmax scale multiplies the
    logits after q @ k^T with `scale_logits` (ViT/DeiT), else q before the
    product (Swin). `bias` is added to the logits; `mask` [windows, N, N],
    the shifted-window mask, then to each image's windows."""

    def __init__(self, x, heads, scale_logits=False):
        super().__init__()
        b, n, c = x.shape
        self.heads, self.scale, self.scale_logits = heads, (c // heads) ** -0.5, scale_logits
        qkv, proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
        with torch.no_grad():
            q, k, v = qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            attn = (q * self.scale @ k.transpose(-2, -1)).softmax(-1)
            out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        self.q = ActQuant(q if scale_logits else q * self.scale)
        self.k, self.attn, self.v = ActQuant(k), ActQuant(attn), ActQuant(v)
        self.qkv, self.proj = QuantLinear(qkv, x), QuantLinear(proj, out)

    def forward(self, x, bias=None, mask=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.scale_logits:
            logits = (self.q(q) @ self.k(k).transpose(-2, -1)) * self.scale
        else:
            logits = self.q(q * self.scale) @ self.k(k).transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        if mask is not None:
            windows = mask.shape[0]
            logits = logits.view(-1, windows, self.heads, n, n) + mask.unsqueeze(1)
            logits = logits.view(-1, self.heads, n, n)
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
            self.attn = Attention(self.norm1(x), heads, scale_logits=True)
            self.mlp = Mlp(self.norm2(x))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SwinBlock(torch.nn.Module):
    """swin_tiny layers.0.blocks.0 and .1: 7x7 window attention with relative
    position bias on a 56x56 grid of 96 channels, then the MLP. With `shift`
    (blocks.1: 3) the map is rolled by -shift before the windows and back
    after, and timm's attention mask keeps tokens of different regions of
    the rolled map apart (-100 on their logits)."""

    def __init__(self, x, heads=3, window=7, shift=0):
        super().__init__()
        b, h, w, c = x.shape
        self.window, self.heads, self.shift = window, heads, shift
        self.norm1, self.norm2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
        self.table = torch.randn((2 * window - 1) ** 2, heads) * 0.02
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.index = rel[..., 0] * (2 * window - 1) + rel[..., 1]
        self.mask = None
        if shift:
            region = torch.zeros(1, h, w, 1)
            bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for i, (rows, cols) in enumerate((r, s) for r in bands for s in bands):
                region[:, rows, cols, :] = i
            ids = self.partition(region).squeeze(-1)
            self.mask = (ids[:, None, :] - ids[:, :, None]).ne(0).float() * -100.0
        with torch.no_grad():
            self.attn = Attention(self.partition(self.roll(self.norm1(x), -shift)), heads)
            self.mlp = Mlp(self.norm2(x))

    def roll(self, x, shift):
        return torch.roll(x, (shift, shift), (1, 2)) if shift else x

    def partition(self, x):
        b, h, w, c = x.shape
        s = self.window
        return x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)

    def forward(self, x):
        b, h, w, c = x.shape
        s = self.window
        bias = self.table[self.index.flatten()].view(s * s, s * s, -1).permute(2, 0, 1)
        windows = self.attn(self.partition(self.roll(self.norm1(x), -self.shift)), bias, self.mask)
        y = windows.view(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        x = x + self.roll(y, self.shift)
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


# bench_recon's units, in its order: (model, unit, block from its input, input shape without the batch).
RECON_UNITS = [
    ("resnet18", "layer1.0", ResNetBlock, (64, 56, 56)),
    ("resnet18", "layer4.0", lambda x: ResNetBlock(x, planes=512, stride=2), (256, 14, 14)),
    ("mobilenetv2", "features.2", InvertedResidual, (16, 112, 112)),
    ("regnetx_600m", "s1.b1", RegNetBlock, (32, 112, 112)),
    ("deit_small", "blocks.0", DeiTBlock, (197, 384)),
    ("swin_tiny", "layers.0.blocks.0", SwinBlock, (56, 56, 96)),
    ("swin_tiny", "layers.0.blocks.1", lambda x: SwinBlock(x, shift=3), (56, 56, 96)),
]


def bench_recon(batch, iterations, units):
    print(f"PyTorch {torch.__version__} reconstruction step, W4A4, {torch.get_num_threads()} threads")
    for model, unit, make, shape in RECON_UNITS:
        if f"{model}:{unit}" not in units:
            continue
        shape = (batch,) + shape
        x_fp = torch.randn(shape)
        x_q = x_fp + 0.05 * torch.randn(shape)
        block = make(x_fp)
        ms = recon_step_ms(block, x_q, x_fp, iterations)
        print(f"  {model:12s} {unit:22s} batch {batch:3d}  {ms:8.1f} ms/iteration", flush=True)


# bench_infer's models, in its order: torchvision's builds of the same architectures.
def infer_models():
    import torchvision

    m = torchvision.models
    return [("resnet18", m.resnet18),
            ("mobilenetv2", m.mobilenet_v2),
            ("deit_small", lambda: m.VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6,
                                                       hidden_dim=384, mlp_dim=1536)),
            ("swin_tiny", m.swin_t)]


INFER_MODELS = ["resnet18", "mobilenetv2", "deit_small", "swin_tiny"]


def bench_infer(batch, repeats, models):
    """FP32 inference: one warm-up batch, then the median of `repeats` batches."""
    print(f"PyTorch {torch.__version__} FP32 inference, {torch.get_num_threads()} threads")
    for name, build in infer_models():
        if name not in models:
            continue
        model = build().eval()
        images = torch.rand(batch, 3, 224, 224) * 4 - 2
        with torch.inference_mode():
            s = median_seconds(repeats, lambda: model(images))
        print(f"  {name:13s} batch {batch:3d}  {batch / s:6.1f} img/s  ({s * 1e3:.1f} ms/batch)", flush=True)


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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--recon", action="store_true", help="reconstruction step (bench_recon)")
    mode.add_argument("--infer", action="store_true", help="FP32 inference (bench_infer)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=10, help="--recon: timed iterations per unit")
    parser.add_argument("--repeats", type=int, default=5, help="--infer: timed batches per model")
    known_units = [f"{model}:{unit}" for model, unit, _, _ in RECON_UNITS]
    parser.add_argument("--units", default=",".join(known_units),
                        help="--recon: comma-separated units (default all): " + " ".join(known_units))
    parser.add_argument("--models", default=",".join(INFER_MODELS),
                        help="--infer: comma-separated models (default all): " + " ".join(INFER_MODELS))
    args = parser.parse_args()
    for flag, value in [("--threads", args.threads), ("--batch", args.batch),
                        ("--iterations", args.iterations), ("--repeats", args.repeats)]:
        if value < (0 if flag == "--threads" else 1):
            parser.error(f"{flag} needs a {'non-negative' if flag == '--threads' else 'positive'} number")
    units, models = args.units.split(","), args.models.split(",")
    for name in units:
        if name not in known_units:
            parser.error(f"unknown unit '{name}'; known: {' '.join(known_units)}")
    for name in models:
        if name not in INFER_MODELS:
            parser.error(f"unknown model '{name}'; known: {' '.join(INFER_MODELS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.recon:
        bench_recon(args.batch, args.iterations, units)
        return
    if args.infer:
        bench_infer(args.batch, args.repeats, models)
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
