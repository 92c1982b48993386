"""Weighted cosine kNN on pooled features (Wu et al., 2018; as in DINO/solo-learn): k neighbours vote
with weight exp(cos / T).

The votes are computed as exp((cos - cos_max) / T) in float64, cos_max the test image's nearest
neighbour's similarity: each row's scores are the published votes times one positive factor, so every
ranking (top-k, per class) is the published one, and no vote overflows for any T > 0. As T -> 0 the
nearest neighbour decides alone (ties share the vote)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, num_classes: int,
                k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores (M, num_classes) in float64, each row scaled so that its nearest neighbour's vote is 1.
    train_f: (N, C), train_y: (N,), test_f: (M, C); temperature > 0."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    k = min(k, train_f.shape[0])
    out = []
    for i in range(0, test_f.shape[0], chunk):
        sim = test_f[i:i + chunk] @ train_f.T  # (m, N)
        w, idx = sim.topk(k, dim=1)
        w = w.double()
        votes = torch.zeros(sim.shape[0], num_classes, dtype=torch.float64)
        votes.scatter_add_(1, train_y[idx], ((w - w[:, :1]) / temperature).exp())
        out.append(votes)
    return torch.cat(out)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent for each k (k capped at the number of classes)."""
    res = {}
    for k in ks:
        kk = min(k, scores.shape[1])
        hit = (scores.topk(kk, dim=1).indices == labels[:, None]).any(1).float().mean()
        res[f"top{k}"] = round(100 * float(hit), 3)
    return res


def per_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Top-1 accuracy in percent per class; None (absent, not 0) for a class without evaluation images."""
    pred = scores.argmax(1)
    return [round(100 * float((pred[labels == c] == c).float().mean()), 3) if (labels == c).any() else None
            for c in range(num_classes)]
