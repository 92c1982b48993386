"""Rotation, colour jitter, blur, grayscale, solarize and normalisation as batched tensor ops, driven
by the recorded parameter vectors.

This is the one implementation of that maths. The per-image path (`AugPipeline.apply`, run in the
loader workers, `augment.device: loader`) calls `photometric` on a batch of one view; with
`augment.device: train` the workers stop after crop + resize + flip and `DeviceAugment` calls it on the
training device once per group of same-sized views, over every view of the batch (V·B, 3, S, S) (on a
CPU once per view, B images, which keeps the working set in cache).
Each sample is transformed by its own parameters only, so both paths give the same image to float
rounding. The reference the tests pin every op against is torchvision's functional ops on float
images.

Shapes: images (N, 3, H, W), float in [0, 1] unless said otherwise; params (N, PARAM_DIM), laid out
as `augment.PARAM_SLICES` says; per-sample factors (N,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision
SOLARIZE_THRESHOLD = 128 / 255  # the uint8 threshold 128 (torchvision's and BYOL's), on [0, 1] images


def blur_kernel(size: int) -> int:
    """The authors' Gaussian kernel size for views of `size` px: size // 20 * 2 + 1 (23 at 224)."""
    return size // 20 * 2 + 1


def _col(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return f.to(x.dtype).view(-1, 1, 1, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) grayscale."""
    r, g, b = x.unbind(-3)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """f·x + (1 − f)·other, clipped to [0, 1]."""
    f = _col(f, x)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _col(f, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the mean of the image's grayscale."""
    return _blend(x, luma(x).mean((-3, -2, -1), keepdim=True), f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the image's grayscale."""
    return _blend(x, luma(x), f)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Shift the HSV hue by f (in turns, f in [-0.5, 0.5]); saturation and value are kept."""
    maxc, minc = x.amax(-3), x.amin(-3)
    delta = maxc - minc  # = V·S
    d = delta.clamp_min(1e-12)  # grey pixels (delta 0) come out as V whatever their hue
    r, g, b = x.unbind(-3)
    hue6 = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))  # 6·H
    hue6 = hue6.add_(6 * f.to(x.dtype).view(-1, 1, 1)).remainder_(6)
    # HSV -> RGB: channel n (R: 5, G: 3, B: 1) = V − V·S·clip(min(k, 4 − k), 0, 1), k = (n + 6H) mod 6
    out = []
    for n in (5, 3, 1):
        k = (hue6 + n).remainder_(6)
        out.append(maxc - delta * torch.minimum(k, 4 - k).clamp_(0, 1))
    return torch.stack(out, -3)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # the order index k in the params


def color_jitter(x: torch.Tensor, applied: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 ops=JITTER_OPS) -> torch.Tensor:
    """Per sample, the four jitter ops in that sample's own order. applied (N,) bool, factors (N, 4)
    (brightness, contrast, saturation, hue), order (N, 4) (op indices). Writes into x and returns it.
    `ops`: the four functions (x, factors (n,)) -> x (another library's, for benchmarks/perf/kornia_compare)."""
    order = order.long()
    for pos in range(4):
        for k, op in enumerate(ops):
            idx = (applied & (order[:, pos] == k)).nonzero().squeeze(1)
            if idx.numel():
                x[idx] = op(x[idx], factors[idx, k])
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur, one sigma (N,) per sample, `kernel` taps, reflect padding."""
    n, c, h, w = x.shape
    half = kernel // 2
    taps = torch.arange(kernel, dtype=x.dtype, device=x.device) - half
    k1 = torch.exp(-0.5 * (taps / sigma.to(x.dtype).view(-1, 1)) ** 2)
    k1 = (k1 / k1.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N·C, kernel)
    y = F.pad(x.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k1.view(n * c, 1, kernel, 1), groups=n * c)
    y = F.conv2d(y, k1.view(n * c, 1, 1, kernel), groups=n * c)
    return y.view(n, c, h, w)


def _where(x: torch.Tensor, flags: torch.Tensor, fn, *args) -> torch.Tensor:
    """x with fn applied to the samples whose flag is set (fn(x_subset, *args_subset))."""
    idx = (flags > 0).nonzero().squeeze(1)
    if idx.numel():
        x[idx] = fn(x[idx], *(a[idx] for a in args))
    return x


def rotate(x: torch.Tensor, applied: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by k·90°, k (N,) per sample; square images."""
    for k in (1, 2, 3):
        _where(x, (applied > 0) & (quarter_turns == k), lambda s, k=k: torch.rot90(s, k, dims=(-2, -1)))
    return x


def photometric(views: torch.Tensor, params: torch.Tensor, mean, std) -> torch.Tensor:
    """Views after crop/resize/flip, uint8 (N, 3, S, S), and their params (N, PARAM_DIM) -> normalised
    float views (N, 3, S, S), in the authors' order: rotate, colour jitter, blur, grayscale, solarize."""
    x = views.float().div_(255) if views.dtype == torch.uint8 else views.float().clone()
    p = params.to(x.device, torch.float32)
    x = rotate(x, p[:, 20], p[:, 21])
    x = color_jitter(x, p[:, 7] > 0, p[:, 8:12], p[:, 12:16])
    x = _where(x, p[:, 17], lambda s, sig: gaussian_blur(s, sig, blur_kernel(x.shape[-1])), p[:, 18])
    x = _where(x, p[:, 16], lambda s: luma(s).expand(-1, 3, -1, -1))
    x = _where(x, p[:, 19], lambda s: torch.where(s >= SOLARIZE_THRESHOLD, 1 - s, s))
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)


class DeviceAugment:
    """`augment.device: train`: the photometric step for a whole batch on the training device.

    views: list of V uint8 tensors (B, 3, S, S) (crop/resize/flip done by the loader), params: list of
    V (B, PARAM_DIM) -> list of V normalised float views. All views of one size go through one call
    (V·B samples), or with `per_view` one call per view (B samples): on a CPU that is ~1.5x faster, the
    working set staying in cache (benchmarks/perf/augment_throughput)."""

    def __init__(self, mean, std, per_view: bool = False):
        self.mean, self.std, self.per_view = tuple(mean), tuple(std), per_view

    def __call__(self, views: list[torch.Tensor], params: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.per_view:
            return [photometric(v, p, self.mean, self.std) for v, p in zip(views, params)]
        out: list[torch.Tensor | None] = [None] * len(views)
        for shape in dict.fromkeys(v.shape for v in views):
            group = [k for k, v in enumerate(views) if v.shape == shape]
            y = photometric(torch.cat([views[k] for k in group]), torch.cat([params[k] for k in group]), self.mean, self.std)
            for k, part in zip(group, y.split(shape[0])):
                out[k] = part
        return out
