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
as `params.PARAM_SLICES` says; per-sample factors (N,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pretrain.transforms.params import BLUR, BLUR_SIGMA, GRAY, JITTER, JITTER_FACTORS, JITTER_ORDER, ROTATE, ROTATE_K, SOLARIZE

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


def index_plan(params: torch.Tensor) -> list[torch.Tensor]:
    """The samples each op applies to, from the parameter vectors (N, PARAM_DIM) on the host: 22 index
    tensors, in the order `photometric` uses them (rotate by 1/2/3 quarter turns; jitter op k at position
    pos, for pos, k in 0..3; blur; grayscale; solarize). Built on the CPU before the copy, so the
    training device never waits for a `nonzero`."""
    if params.device.type != "cpu":
        raise ValueError(f"index_plan needs the parameter vectors on the host, got them on {params.device}")
    p = params.float()
    flags = [(p[:, ROTATE] > 0) & (p[:, ROTATE_K] == k) for k in (1, 2, 3)]
    order = p[:, JITTER_ORDER].long()
    flags += [(p[:, JITTER] > 0) & (order[:, pos] == k) for pos in range(4) for k in range(4)]
    flags += [p[:, BLUR] > 0, p[:, GRAY] > 0, p[:, SOLARIZE] > 0]
    return [f.nonzero().squeeze(1) for f in flags]


def cat_on(device: torch.device, tensors: list[torch.Tensor]) -> torch.Tensor:
    """`torch.cat(tensors)` on `device`: each host tensor (pinned by the loader) copied as it is, asynchronously,
    then concatenated there. Concatenating on the host first would give a new, pageable tensor, whose
    `non_blocking` copy waits."""
    if device.type == "cpu":
        return torch.cat(tensors)
    return torch.cat([t.to(device, non_blocking=True) for t in tensors])


def plan_to(plan: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """The plan on `device` in one host-to-device copy (pinned, asynchronous on a GPU)."""
    if device.type == "cpu":
        return plan
    flat = torch.cat(plan)
    flat = flat.pin_memory() if torch.cuda.is_available() else flat
    return list(flat.to(device, non_blocking=True).split([len(i) for i in plan]))


def _apply(x: torch.Tensor, idx: torch.Tensor, fn, *args) -> torch.Tensor:
    """x with fn applied to the samples `idx` (fn(x[idx], *(a[idx] for a in args)))."""
    if idx.numel():
        x[idx] = fn(x[idx], *(a[idx] for a in args))
    return x


def rotate(x: torch.Tensor, plan: list[torch.Tensor]) -> torch.Tensor:
    """Counter-clockwise rotation by k·90° of the samples plan[k - 1] (k = 1, 2, 3); square images."""
    for k in (1, 2, 3):
        x = _apply(x, plan[k - 1], lambda s, k=k: torch.rot90(s, k, dims=(-2, -1)))
    return x


def color_jitter(x: torch.Tensor, factors: torch.Tensor, plan: list[torch.Tensor], ops=JITTER_OPS) -> torch.Tensor:
    """Per sample, the four jitter ops in that sample's own order. factors (N, 4) (brightness, contrast,
    saturation, hue); plan: 16 index tensors, the samples with op k at position pos (index 4·pos + k).
    Writes into x and returns it. `ops`: the four functions (x, factors (n,)) -> x (another library's, for
    benchmarks/perf/kornia_compare)."""
    for pos in range(4):
        for k, op in enumerate(ops):
            x = _apply(x, plan[4 * pos + k], lambda s, f, op=op: op(s, f), factors[:, k])
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


def photometric(views: torch.Tensor, params: torch.Tensor, mean, std, plan: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Views after crop/resize/flip, uint8 (N, 3, S, S), and their params (N, PARAM_DIM) -> normalised
    float views (N, 3, S, S), in the authors' order: rotate, colour jitter, blur, grayscale, solarize.
    `plan`: `index_plan(params)` on the views' device (built here when None, from params on the host)."""
    x = views.float().div_(255) if views.dtype == torch.uint8 else views.float().clone()
    if plan is None:
        plan = index_plan(params)
    p = params.to(x.device, torch.float32)
    x = rotate(x, plan[:3])
    x = color_jitter(x, p[:, JITTER_FACTORS], plan[3:19])
    x = _apply(x, plan[19], lambda s, sig: gaussian_blur(s, sig, blur_kernel(x.shape[-1])), p[:, BLUR_SIGMA])
    x = _apply(x, plan[20], lambda s: luma(s).expand(-1, 3, -1, -1))
    x = _apply(x, plan[21], lambda s: torch.where(s >= SOLARIZE_THRESHOLD, 1 - s, s))
    for c in range(3):  # Python scalars: nothing to copy to the device
        x[:, c].sub_(mean[c]).div_(std[c])
    return x


class DeviceAugment:
    """`augment.device: train`: the photometric step for a whole batch on the training device.

    views: list of V uint8 tensors (B, 3, S, S) (crop/resize/flip done by the loader), params: list of
    V (B, PARAM_DIM) -> list of V normalised float views. All views of one size go through one call
    (V·B samples), or with `per_view` one call per view (B samples): on a CPU that is ~1.5x faster, the
    working set staying in cache (benchmarks/perf/augment_throughput)."""

    def __init__(self, mean, std, per_view: bool = False):
        self.mean, self.std, self.per_view = tuple(mean), tuple(std), per_view

    def __call__(self, views: list[torch.Tensor], params: list[torch.Tensor], device: torch.device = torch.device("cpu")
                 ) -> list[torch.Tensor]:
        """views/params on the host (as the loader gives them) -> normalised views on `device`; the index
        plans are built on the host and travel with the views, so nothing waits on the device."""
        groups = [[k] for k in range(len(views))] if self.per_view else \
            [[k for k, v in enumerate(views) if v.shape == shape] for shape in dict.fromkeys(v.shape for v in views)]
        out: list[torch.Tensor | None] = [None] * len(views)
        for group in groups:
            plan = plan_to(index_plan(torch.cat([params[k] for k in group])), device)
            x = cat_on(device, [views[k] for k in group])
            y = photometric(x, cat_on(device, [params[k] for k in group]), self.mean, self.std, plan)
            for k, part in zip(group, y.split(views[group[0]].shape[0])):
                out[k] = part
        return out
