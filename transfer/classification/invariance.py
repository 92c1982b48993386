"""The invariance map: for each backbone stage and each augmentation type, how invariant the stage's pooled
features are to that augmentation.

For N images x_i, their augmented copies a(x_i) (one type only, at the method's full strength) and the
pooled features f of a stage, with c(u, v) the cosine similarity:

    pos = mean_i c(f(x_i), f(a(x_i)))          (an image and its augmented copy)
    neg = mean_{i != j} c(f(x_i), f(x_j))      (two different images)
    invariance = (pos - neg) / (1 - neg)

1: the augmented copy is as similar as the image itself; 0: no more similar than another image;
features that ignore the input (neg = 1) score 1. This is the cosine-similarity invariance of Ericsson et
al. (2022, "Why do self-supervised models transfer? On the impact of invariance on downstream tasks",
BMVC), normalised by the similarity of different images so that stages with different feature
statistics can be compared (as Goodfellow et al., 2009, "Measuring invariances in deep networks", compare
firing rates to a baseline). The 95% interval is a percentile bootstrap over images.

Shapes: images (N, 3, S, S) normalised; features (N, C) per stage.
"""
from __future__ import annotations

import textwrap

import torch
from torch import nn
from torchvision.datasets import ImageFolder
from tqdm import tqdm

from pretrain.data.images import read_rgb
from pretrain.transforms.augment import AugPipeline

STAGES = (1, 2, 3, 4)
FULL = dict(crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), blur_sigma=(0.1, 2.0))  # the method's strengths
# type -> the one-type pipeline that makes the augmented copy (probability 1)
AUGMENTATIONS = {
    "crop": dict(types=("crop",)),
    "jitter": dict(types=("jitter",), jitter_p=1.0),
    "brightness": dict(types=("jitter",), jitter_p=1.0, jitter=(0.4, 0.0, 0.0, 0.0)),
    "contrast": dict(types=("jitter",), jitter_p=1.0, jitter=(0.0, 0.4, 0.0, 0.0)),
    "saturation": dict(types=("jitter",), jitter_p=1.0, jitter=(0.0, 0.0, 0.4, 0.0)),
    "hue": dict(types=("jitter",), jitter_p=1.0, jitter=(0.0, 0.0, 0.0, 0.1)),
    "gray": dict(types=("gray",), gray_p=1.0),
    "blur": dict(types=("blur",), blur_p=1.0),
    "flip": dict(types=("flip",), flip_p=1.0),
    "rotation": dict(types=("rotate",), rotate_p=1.0),
}


def pipelines(size: int) -> tuple[AugPipeline, dict[str, AugPipeline]]:
    """(the plain view: the whole image resized, the one-type pipelines by name)."""
    plain = AugPipeline(size=size, types=())
    return plain, {name: AugPipeline(size=size, **dict(FULL, **kw)) for name, kw in AUGMENTATIONS.items()}


def stage_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Globally pooled features of layer1..layer4 of a torchvision ResNet: 4 tensors (N, C_s)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        out.append(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
    return out


def invariance(orig: torch.Tensor, aug: torch.Tensor, boot: int = 200, seed: int = 0) -> dict:
    """Invariance of features `aug` (N, C) of augmented copies w.r.t. `orig` (N, C): mean and 95% bootstrap
    interval over images (percentiles of `boot` resamples)."""
    a = nn.functional.normalize(orig.double(), dim=1)
    b = nn.functional.normalize(aug.double(), dim=1)
    pos = (a * b).sum(1)  # (N,)
    sim = a @ a.T  # (N, N)

    def score(idx: torch.Tensor) -> float:
        s = sim[idx][:, idx]
        off = idx[:, None] != idx[None, :]
        neg = s[off].mean() if off.any() else s.new_tensor(1.0)
        if 1 - neg < 1e-9:
            return 1.0
        return float((pos[idx].mean() - neg) / (1 - neg))

    n = len(pos)
    mean = score(torch.arange(n))
    g = torch.Generator().manual_seed(seed)
    samples = torch.tensor([score(torch.randint(n, (n,), generator=g)) for _ in range(boot)])
    low, high = torch.quantile(samples, torch.tensor([0.025, 0.975], dtype=samples.dtype)).tolist()
    return {"mean": mean, "low": low, "high": high}


def pick_images(root, n: int) -> list[str]:
    """n image paths spread evenly over an ImageFolder (all classes represented)."""
    samples = ImageFolder(str(root), loader=lambda p: p, allow_empty=False).samples
    step = max(1, len(samples) // n)
    return [p for p, _ in samples[::step][:n]]


@torch.no_grad()
def invariance_map(net: nn.Module, paths: list[str], size: int, device: str = "cpu", batch: int = 64, seed: int = 0,
                   boot: int = 200) -> dict:
    """{"layer<s>": {augmentation: {"mean", "low", "high"}}} for a torchvision ResNet `net` (eval mode)."""
    net = net.to(device).eval()
    plain, augs = pipelines(size)
    images = [read_rgb(p) for p in paths]

    def features(pipe: AugPipeline, name: str) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1000 + list(augs).index(name) if name in augs else seed)
        views = torch.stack([pipe(img, g)[0] for img in images])
        parts = [stage_features(net, views[i:i + batch].to(device)) for i in range(0, len(views), batch)]
        return [torch.cat([p[s] for p in parts]).cpu() for s in range(4)]

    base = features(plain, "plain")
    out: dict[str, dict] = {f"layer{s}": {} for s in STAGES}
    for name, pipe in tqdm(augs.items(), desc="invariance map", unit="augmentation"):
        feats = features(pipe, name)
        for s in STAGES:
            out[f"layer{s}"][name] = invariance(base[s - 1], feats[s - 1], boot, seed)
    return out


def plot(matrix: dict, path, title: str, diff: bool = False) -> None:
    """Heatmap of a stage x augmentation matrix (values: `mean`), or of a difference matrix with `diff`; a
    cell whose dict says `"contains_zero": False` (its interval excludes 0) is annotated with a `*`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = list(matrix), list(next(iter(matrix.values())))
    values = torch.tensor([[matrix[r][c]["mean"] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.6 + 0.8 * len(cols), 1.4 + 0.6 * len(rows)))
    lim = float(values.abs().max()) or 1.0
    im = ax.imshow(values, cmap="RdBu_r" if diff else "viridis", vmin=-lim if diff else 0, vmax=lim if diff else 1)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            mark = "*" if matrix[r][c].get("contains_zero") is False else ""
            dark = abs(float(values[i, j])) > 0.6 * lim if diff else float(values[i, j]) < 0.6
            ax.text(j, i, f"{values[i, j]:.2f}{mark}", ha="center", va="center", fontsize=7, color="w" if dark else "k")
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def difference(a: dict, b: dict) -> dict:
    """a - b, cell by cell (means; the intervals are not differenced): the same stage x augmentation layout."""
    return {r: {c: {"mean": a[r][c]["mean"] - b[r][c]["mean"]} for c in a[r]} for r in a}
