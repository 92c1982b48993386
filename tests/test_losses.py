"""Each loss against a slow, loop-based reference implementation, over a parameter grid."""
import math

import pytest
import torch

from pretrain.methods.losses import barlow_twins_loss, byol_loss, info_nce, negative_cosine, simsiam_loss


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def ref_simsiam(p1, p2, z1, z2):
    n = len(p1)
    d = lambda p, z: -sum(_cos(p[i].tolist(), z[i].tolist()) for i in range(n)) / n
    return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)


def ref_byol(p1, p2, t1, t2):
    n = len(p1)

    def term(p, t):
        tot = 0.0
        for i in range(n):
            pn = p[i] / p[i].norm()
            tn = t[i] / t[i].norm()
            tot += float(((pn - tn) ** 2).sum())
        return tot / n

    return term(p1, t2) + term(p2, t1)


def ref_barlow(z1, z2, lambd, scale):
    n, d = z1.shape
    a = [[(z1[i, j] - z1[:, j].mean()) / math.sqrt(z1[:, j].var(unbiased=False) + 1e-5) for j in range(d)] for i in range(n)]
    b = [[(z2[i, j] - z2[:, j].mean()) / math.sqrt(z2[:, j].var(unbiased=False) + 1e-5) for j in range(d)] for i in range(n)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(float(a[k][i]) * float(b[k][j]) for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c * c
    return scale * loss


def ref_info_nce(q, k, queue, t):
    tot = 0.0
    for i in range(len(q)):
        logits = [float(q[i] @ k[i]) / t] + [float(q[i] @ queue[j]) / t for j in range(len(queue))]
        m = max(logits)
        tot += -(logits[0] - m - math.log(sum(math.exp(x - m) for x in logits)))
    return tot / len(q)


@pytest.mark.parametrize("n,d", [(2, 3), (5, 8), (16, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_simsiam_and_byol(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    p1, p2, z1, z2 = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4))
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(ref_simsiam(p1, p2, z1, z2), abs=1e-10)
    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(ref_byol(p1, p2, z1, z2), abs=1e-10)


@pytest.mark.parametrize("n,d", [(4, 3), (9, 5)])
@pytest.mark.parametrize("lambd,scale", [(3.9e-3, 1.0), (0.05, 1 / 32), (1.0, 0.5)])
def test_barlow_twins(n, d, lambd, scale):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    assert barlow_twins_loss(z1, z2, lambd, scale).item() == pytest.approx(ref_barlow(z1, z2, lambd, scale), rel=1e-7)


@pytest.mark.parametrize("n,d,k", [(3, 4, 5), (8, 16, 32)])
@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_info_nce(n, d, k, t):
    g = torch.Generator().manual_seed(k)
    norm = torch.nn.functional.normalize
    q, key, queue = (norm(torch.randn(m, d, generator=g, dtype=torch.float64), dim=1) for m in (n, n, k))
    assert info_nce(q, key, queue, t).item() == pytest.approx(ref_info_nce(q, key, queue, t), rel=1e-9)


def test_closed_forms():
    x = torch.randn(6, 5)
    assert simsiam_loss(x, x, x, x).item() == pytest.approx(-1.0, abs=1e-6)
    assert byol_loss(x, x, x, x).item() == pytest.approx(0.0, abs=1e-5)
    # q = k and every negative orthogonal: loss = -log(e^{1/T} / (e^{1/T} + K))
    q = torch.eye(4)[:2]
    queue = torch.eye(4)[2:].repeat(3, 1)
    t = 0.2
    want = -math.log(math.exp(1 / t) / (math.exp(1 / t) + len(queue)))
    assert info_nce(q, q, queue, t).item() == pytest.approx(want, rel=1e-6)


def test_stop_gradient():
    p, z = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None
