"""The method as a switch on each baseline: stage-wise forward, embeddings, EMA, queues, batching modes."""
import pytest
import torch

from pretrain.config.config import load_config
from pretrain.engine.build import build_model
from pretrain.methods import METHODS
from pretrain.transforms.augment import PARAM_DIM

SMALL = ["method.arch=resnet18", "method.proj={hidden: 32, out: 16}", "method.pred_hidden=8", "method.queue_size=24",
         "hier.head_reduce=[8, 8, 8]", "expand.dim=8", "augment.size=32"]


def make(name, *extra):
    cfg = load_config(None, [f"method.name={name}", *SMALL, *extra])
    if name == "barlowtwins":
        cfg["method"]["proj"].update(last_bn=False)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def inputs(n_pairs, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 3, 32, 32, generator=g) for _ in range(2 * n_pairs)]
    params = [torch.rand(b, PARAM_DIM, generator=g) for _ in range(2 * n_pairs)]
    return views, params


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("hier,expand", [(True, True), (False, False), (True, False), (False, True)])
def test_every_baseline_with_and_without_the_method(name, hier, expand):
    model, cfg = make(name, f"hier.enabled={hier}", f"expand.enabled={expand}")
    n = 4 if hier else 1
    assert model.stages == ([1, 2, 3, 4] if hier else [4])
    assert (len(model.online.embeds) > 0) == expand
    loss, logs = model(*inputs(n))
    assert torch.isfinite(loss) and sorted(logs) == [f"loss/stage{s}" for s in model.stages]
    loss.backward()
    assert model.backbone.conv1.weight.grad is not None


def test_baseline_is_exactly_one_pair_at_stage_4_without_extra_modules():
    model, _ = make("simsiam", "hier.enabled=false", "expand.enabled=false")
    assert model.stages == [4] and len(model.online.heads) == 0 and len(model.online.embeds) == 0


def test_each_pair_stops_at_its_stage():
    model, _ = make("simsiam", "hier.pairs=[{stage: 1, types: [crop, jitter]}]", "hier.weights=[1.0]")
    loss, _ = model(*inputs(1))
    loss.backward()
    assert model.backbone.layer1[0].conv1.weight.grad is not None
    for s in (2, 3, 4):
        assert all(p.grad is None for p in model.backbone.layer(s).parameters())


def test_expanded_views_use_the_jitter_factors_only():
    model, _ = make("simsiam")
    emb = model.online.embeds["2"]
    assert emb.index.tolist() == [8, 9, 10, 11] and sorted(model.online.embeds) == ["2", "3", "4"]
    views, params = inputs(4)
    model.eval()
    z = model.online(views, params, model.view_stages())
    params2 = [p.clone() for p in params]
    params2[2][:, 8] += 1.0  # brightness of pair 2, view 1
    z2 = model.online(views, params2, model.view_stages())
    assert not torch.allclose(z[2], z2[2]) and torch.allclose(z[0], z2[0]) and torch.allclose(z[3], z2[3])
    params3 = [p.clone() for p in params]
    params3[2][:, 0:6] += 1.0  # crop parameters are not embedded by default
    assert torch.allclose(z[2], model.online(views, params3, model.view_stages())[2])


@pytest.mark.parametrize("mode", ["pair", "shared"])
def test_batching_modes_agree_in_eval_mode(mode):
    model, _ = make("simsiam")
    model.eval()
    views, params = inputs(4)
    ref = model.online(views, params, model.view_stages(), "view")
    out = model.online(views, params, model.view_stages(), mode)
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["byol", "mocov2"])
def test_target_is_an_ema_without_gradients(name):
    model, _ = make(name)
    before = [p.detach().clone() for p in model.target.parameters()]
    opt = torch.optim.SGD(model.online.parameters(), lr=0.5)
    loss, _ = model(*inputs(4))
    loss.backward()
    assert all(p.grad is None for p in model.target.parameters())
    opt.step()
    model.update_target()
    m = model.momentum
    for b, t, o in zip(before, model.target.parameters(), model.online.parameters()):
        torch.testing.assert_close(t, m * b + (1 - m) * o.detach())


def test_moco_queues_advance():
    model, _ = make("mocov2")
    q_before = model.queue4.clone()
    model(*inputs(4, b=4))
    assert int(model.queue_ptr4) == 4 and int(model.queue_ptr1) == 4
    assert not torch.equal(model.queue4[:4], q_before[:4]) and torch.equal(model.queue4[4:], q_before[4:])
    model(*inputs(4, b=4, seed=1))
    assert int(model.queue_ptr4) == 8


def test_comparison_variants_load():
    from pathlib import Path

    for name in ("uniform", "strength"):
        cfg = load_config(Path(f"configs/pretrain/simsiam-hier-{name}_resnet50_8xb32-coslr-200e_in100.yaml"))
        assert [p["stage"] for p in cfg["hier"]["pairs"]] == [1, 2, 3, 4]
        assert all(len(p["types"]) == 5 for p in cfg["hier"]["pairs"])


def test_total_loss_is_the_weighted_sum_of_the_stage_losses():
    model, _ = make("simsiam", "hier.weights=[1.0, 2.0, 0.5, 3.0]")
    loss, logs = model(*inputs(4))
    want = sum(w * float(logs[f"loss/stage{s}"]) for w, s in zip((1.0, 2.0, 0.5, 3.0), (1, 2, 3, 4)))
    assert float(loss) == pytest.approx(want, rel=1e-6) and len({round(float(v), 6) for v in logs.values()}) == 4
