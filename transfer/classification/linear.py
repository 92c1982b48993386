"""Frozen-backbone linear probe (MoCo protocol and the paper's presets), optionally distributed.

The backbone runs in eval mode under no_grad; only the fc layer trains. After training the backbone
must be bit-identical to the loaded one (MoCo v3's sanity check), else the run fails.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .datasets import image_folder
from .features import eval_transform, train_transform
from .knn import per_class_accuracy, topk_accuracy

# lr, epochs, milestones (fractions of the schedule), optimizer, batch, weight decay; label: "standard" (MoCo's
# main_lincls protocol, the community standard), "paper" (Zhang & Ma's presets), "demo"
PRESETS = {
    "moco": dict(lr=30.0, epochs=100, milestones=(0.6, 0.8), optimizer="sgd", batch_size=256, weight_decay=0.0,
                 label="standard", name="MoCo linear probe (SGD lr 30, 100 ep, x0.1 at 60/80)"),
    "paper_in1k": dict(lr=30.0, epochs=90, milestones=(0.6, 0.8), optimizer="sgd", batch_size=256, weight_decay=0.0,
                       label="paper", name="paper linear probe (SGD lr 30, 90 ep, x0.1 at 60%/80%)"),
    "paper_200e": dict(lr=30.0, epochs=200, milestones=(0.6, 0.8), optimizer="sgd", batch_size=256, weight_decay=0.0,
                       label="paper", name="paper linear probe (SGD lr 30, 200 ep, x0.1 at 60%/80%)"),
    "paper_cars_adam": dict(lr=0.03, epochs=200, milestones=(0.6, 0.8), optimizer="adam", batch_size=256, weight_decay=0.0,
                            label="paper", name="paper linear probe (Adam lr 0.03, 200 ep)"),
    "demo": dict(lr=1.0, epochs=30, milestones=(0.6, 0.8), optimizer="sgd", batch_size=64, weight_decay=0.0,
                 label="demo", name="demo linear probe"),
}


# the fast probe on cached features (`linear_on_features`): not a protocol, labelled non-standard
FAST = dict(epochs=100, lr=0.1, label="non-standard")


def sanity_check(before: dict[str, torch.Tensor], model: nn.Module) -> int:
    """Every backbone tensor (BN statistics included) is unchanged by the probe; returns how many were compared."""
    after = model.state_dict()
    compared = [k for k in before if k in after and not k.startswith("fc.")]
    changed = [k for k in compared if not torch.equal(before[k], after[k].cpu())]
    if changed:
        raise RuntimeError(f"the frozen backbone changed during the linear probe: {changed[:5]}")
    return len(compared)


def _rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def train_linear(backbone: nn.Module, train_dir: Path, val_dir: Path, classes: list[str], preset: dict, size: int = 224,
                 workers: int = 4, device: str = "cpu", seed: int = 0, log=print) -> dict:
    """Train fc on frozen pooled features with RandomResizedCrop+flip; evaluate with Resize+CenterCrop after
    every epoch (every validation image, the last partial batch included), as MoCo's main_lincls does. Labels
    index `classes` (train's) by name in both splits.

    Returns metrics of the final epoch (top1, top5, per_class) and `best` (top1, top5, epoch: the best
    epoch's), the effective lr (preset lr x batch/256), the milestones (epochs), the lr the optimizer used
    in each epoch, epochs, seconds."""
    rank, world = _rank_world()
    num_classes = len(classes)
    torch.manual_seed(seed)
    backbone = backbone.to(device).eval()
    for p in backbone.parameters():
        p.requires_grad = False
    before = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    feat_dim = backbone(torch.zeros(2, 3, size, size, device=device)).shape[1]
    fc = nn.Linear(feat_dim, num_classes).to(device)
    nn.init.normal_(fc.weight, std=0.01)
    nn.init.zeros_(fc.bias)
    head = nn.parallel.DistributedDataParallel(fc) if world > 1 else fc
    batch = preset["batch_size"] // world
    lr = preset["lr"] * preset["batch_size"] / 256
    opt = (torch.optim.SGD(fc.parameters(), lr, momentum=0.9, weight_decay=preset["weight_decay"])
           if preset["optimizer"] == "sgd" else torch.optim.Adam(fc.parameters(), lr, weight_decay=preset["weight_decay"]))
    epochs = preset["epochs"]
    milestones = [math.floor(m * epochs) for m in preset["milestones"]]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1)
    train_ds = image_folder(train_dir, train_transform(size), classes)
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=seed) if world > 1 else None
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_ds, batch_size=batch, shuffle=sampler is None, sampler=sampler, num_workers=workers,
                        drop_last=len(train_ds) >= batch * world, generator=g, persistent_workers=workers > 0)
    val_loader = DataLoader(image_folder(val_dir, eval_transform(size), classes), batch_size=batch,
                            num_workers=workers, drop_last=False)
    t0 = time.time()
    best = {"top1": -1.0}
    lr_per_epoch = []
    bar = tqdm(range(epochs), desc="linear probe", unit="epoch", disable=rank != 0)
    for epoch in bar:
        if sampler is not None:
            sampler.set_epoch(epoch)
        lr_per_epoch.append(opt.param_groups[0]["lr"])
        fc.train()
        total, n = 0.0, 0
        for x, y in loader:
            with torch.no_grad():
                f = backbone(x.to(device))
            loss = nn.functional.cross_entropy(head(f), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + float(loss) * len(y), n + len(y)
        sched.step()
        s, y = evaluate(fc, backbone, val_loader, device)
        acc = topk_accuracy(s, y)
        if acc["top1"] > best["top1"]:
            best = dict(acc, epoch=epoch + 1)
        bar.set_postfix(loss=f"{total / max(n, 1):.3f}", lr=f"{sched.get_last_lr()[0]:.3g}", top1=f"{acc['top1']:.1f}")
    checked = sanity_check(before, backbone)
    out = dict(acc, per_class=per_class_accuracy(s, y, num_classes), final_epoch=epochs, best=best, val_images=len(y),
               epochs=epochs, seconds=round(time.time() - t0, 1), backbone_checked_tensors=checked, lr=lr, milestones=milestones,
               lr_per_epoch=lr_per_epoch, batch_size=preset["batch_size"], optimizer=preset["optimizer"])
    return out


@torch.no_grad()
def evaluate(fc: nn.Module, backbone: nn.Module, loader: DataLoader, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (N, classes), labels (N,)) over every image the loader yields."""
    fc.eval()
    scores, labels = [], []
    for x, y in loader:
        scores.append(fc(backbone(x.to(device))).cpu())
        labels.append(y)
    return torch.cat(scores), torch.cat(labels)


def linear_on_features(train_f: torch.Tensor, train_y: torch.Tensor, val_f: torch.Tensor, val_y: torch.Tensor,
                       num_classes: int, epochs: int = FAST["epochs"], lr: float = FAST["lr"], seed: int = 0) -> dict:
    """Fast probe on cached (non-augmented) features: standardised features, full-batch-free SGD with cosine lr."""
    torch.manual_seed(seed)
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    xt, xv = (train_f - mean) / std, (val_f - mean) / std
    fc = nn.Linear(xt.shape[1], num_classes)
    opt = torch.optim.SGD(fc.parameters(), lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in tqdm(range(epochs), desc="linear (cached features)", unit="epoch", leave=False):
        for idx in torch.randperm(len(xt)).split(256):
            loss = nn.functional.cross_entropy(fc(xt[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        s = fc(xv)
    return dict(topk_accuracy(s, val_y), per_class=per_class_accuracy(s, val_y, num_classes), epochs=epochs)
