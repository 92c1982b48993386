"""The baselines' losses as pure functions of embeddings (no momentum/queue bookkeeping here).

Shapes: p*, z*, t*, q, k: (B, D); queue: (K, D). All return a scalar.
- [SimSiam] Chen & He, 2021, https://arxiv.org/abs/2011.10566
- [BYOL] Grill et al., 2020, https://arxiv.org/abs/2006.07733
- [Barlow Twins] Zbontar et al., 2021, https://arxiv.org/abs/2103.03230
- [MoCo v2] Chen et al., 2020, https://arxiv.org/abs/2003.04297
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -cos(p, sg(z)), averaged over the batch."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """½·D(p1, sg(z2)) + ½·D(p2, sg(z1)); in [-1, 1]."""
    return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Symmetrised ‖p̄ − t̄‖² = 2 − 2·cos(p, sg(t)) for (p1, t2) and (p2, t1); in [0, 8]."""
    return (2 + 2 * negative_cosine(p1, t2)) + (2 + 2 * negative_cosine(p2, t1))


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 3.9e-3, scale: float = 1.0,
                      standardize: bool = True, distributed: bool = False) -> torch.Tensor:
    """scale · [Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²], C the cross-correlation of the batch-standardised z1, z2.

    `standardize=False` when the caller already standardised z over the batch (an affine-free,
    synchronised BatchNorm, as the method does). With `distributed`, C is summed over all ranks, so the
    loss is that of the global batch, and so is the gradient after DDP's average: one all-reduce of the
    detached C gives the value, the local term scaled by the world size W carries the gradient
    (W·dL/dC·dC_r/dθ per rank; a gradient-carrying all-reduce would all-reduce the W equal dL/dC again
    in backward for the same result, twice the traffic)."""
    n = z1.shape[0]
    if standardize:
        z1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
        z2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
    c = z1.T @ z2
    if distributed and dist.is_initialized() and dist.get_world_size() > 1:
        w = dist.get_world_size()
        total = c.detach().clone()
        dist.all_reduce(total)
        c = total + w * (c - c.detach())
        n = n * w
    c = c / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return scale * (on_diag + lambd * off_diag)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Cross-entropy of the positive key among [k, queue]; q, k, queue L2-normalised by the caller.

    logits: (B, 1 + K) = [q·k, q·queueᵀ] / T, label 0."""
    l_pos = (q * k.detach()).sum(-1, keepdim=True)  # (B, 1)
    l_neg = q @ queue.detach().T  # (B, K)
    logits = torch.cat([l_pos, l_neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
