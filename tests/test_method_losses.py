"""Each method's training loss, computed by the method on a small hand-made batch, equals the loss written
out here from the networks' outputs: which view is predicted from which, both symmetric terms, the target
network (perturbed so that it differs from the online one), MoCo's queue (and what is enqueued), Barlow
Twins' standardisation and constants; with the method's four stages and as the plain baseline."""
import pytest
import torch

from .test_method import inputs, make

# Barlow Twins' constants of the defaults (the authors' early release, f13c949: lambda 3.9e-3, loss x 1/32)
BT_LAMBDA, BT_SCALE = 3.9e-3, 1 / 32


def _cos(a, b):
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _perturb_target(model):
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for p in model.target.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _online(model, views, params):
    return model.online(views, params, model.view_stages(), "view")


def _by_hand(name, model, views, params):
    """{stage: loss} from the method's own networks, each formula written out."""
    z = _online(model, views, params)
    out = {}
    for k, s in enumerate(model.stages):
        z1, z2 = z[2 * k], z[2 * k + 1]
        if name == "simsiam":
            p1, p2 = model.predictors[str(s)](z1), model.predictors[str(s)](z2)
            out[s] = -0.5 * _cos(p1, z2).mean() - 0.5 * _cos(p2, z1).mean()
        elif name == "byol":
            t = model.target(views, params, model.view_stages(), "view")
            p1, p2 = model.predictors[str(s)](z1), model.predictors[str(s)](z2)
            t1, t2 = t[2 * k], t[2 * k + 1]
            out[s] = (2 - 2 * _cos(p1, t2).mean()) + (2 - 2 * _cos(p2, t1).mean())
        elif name == "barlowtwins":
            a = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
            b = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
            c = a.T @ b / a.shape[0]
            on = ((1 - torch.diagonal(c)) ** 2).sum()
            off = (c ** 2).sum() - (torch.diagonal(c) ** 2).sum()
            out[s] = BT_SCALE * (on + BT_LAMBDA * off)  # the numbers, not the module's attributes
        elif name == "mocov2":
            t = model.target(views, params, model.view_stages(), "view")
            q = z1 / z1.norm(dim=1, keepdim=True)
            key = t[2 * k + 1] / t[2 * k + 1].norm(dim=1, keepdim=True)
            queue = getattr(model, f"queue{s}")
            logits = torch.cat([(q * key).sum(1, keepdim=True), q @ queue.T], 1) / model.temperature
            out[s] = (torch.logsumexp(logits, 1) - logits[:, 0]).mean()  # cross-entropy, the positive at 0
    return out


@pytest.mark.parametrize("hier", [True, False])
@pytest.mark.parametrize("name", ["simsiam", "byol", "barlowtwins", "mocov2"])
def test_each_methods_loss_equals_the_loss_written_out_by_hand(name, hier):
    model, _ = make(name, f"hier.enabled={hier}", f"expand.enabled={hier}", "hier.weights=[1.0, 0.5, 2.0, 1.5]",
                    "method.batching=view")
    if model.uses_target:
        _perturb_target(model)
    views, params = inputs(4 if hier else 1, b=6, seed=3)
    queues = {s: getattr(model, f"queue{s}").clone() for s in model.stages} if name == "mocov2" else {}
    with torch.no_grad():
        want = _by_hand(name, model, views, params)
    loss, logs = model(views, params)
    assert sorted(want) == ([1, 2, 3, 4] if hier else [4])
    for s, v in want.items():
        assert float(logs[f"loss/stage{s}"]) == pytest.approx(float(v), rel=1e-5, abs=1e-6), s
    weights = dict(zip(model.stages, [1.0, 0.5, 2.0, 1.5] if hier else [1.0]))
    assert float(loss) == pytest.approx(sum(weights[s] * float(v) for s, v in want.items()), rel=1e-5)
    if name == "mocov2":  # the keys of view 2 (from the target network) are enqueued after the loss
        t = model.target(views, params, model.view_stages(), "view")
        for k, s in enumerate(model.stages):
            key = t[2 * k + 1] / t[2 * k + 1].norm(dim=1, keepdim=True)
            queue = getattr(model, f"queue{s}")
            torch.testing.assert_close(queue[:6], key, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(queue[6:], queues[s][6:]) and int(getattr(model, f"queue_ptr{s}")) == 6


def test_only_the_online_network_and_the_predictors_learn():
    """BYOL: the loss's gradient reaches the online encoder and the predictors, never the target."""
    model, _ = make("byol", "method.batching=view", "hier.enabled=false", "expand.enabled=false")
    _perturb_target(model)
    loss, _ = model(*inputs(1, b=6))
    loss.backward()
    assert all(p.grad is None for p in model.target.parameters())
    assert model.online.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.predictors.parameters())


@pytest.mark.parametrize("preset,lambd,scale", [
    ("barlowtwins_resnet18_1xb64-coslr-4e_demo", 3.9e-3, 1 / 32),
    ("barlowtwins-hier_resnet50_8xb32-coslr-200e_in100", 3.9e-3, 1 / 32),
    ("barlowtwins-published_resnet50_8xb32-coslr-200e_in100", 0.0051, 1.0),  # main.py at 8e8d284
])
def test_each_barlow_twins_preset_builds_the_method_with_its_published_constants(preset, lambd, scale):
    """Swapping lambda and the scale where the method stores them (or where the builder passes them) is caught here."""
    from pretrain.config.config import load_config
    from pretrain.engine.build import build_model

    from .conftest import ROOT

    cfg = load_config(ROOT / f"configs/pretrain/{preset}.yaml",
                      ["method.arch=resnet18", "method.proj={hidden: 16, out: 16}", "hier.head_reduce=[8, 8, 8]"])
    model = build_model(cfg)
    assert (model.lambd, model.scale) == (lambd, scale)
