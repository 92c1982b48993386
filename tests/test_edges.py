"""Edges where a result goes quietly wrong: the paired interval with exactly two seeds, a linear probe whose last
epoch is not its best (the unreadable-image budget's edges are in test_preemption)."""
import math

import pytest
import torch

from pretrain.data.images import class_folders


def test_two_seeds_give_the_paired_interval_with_one_degree_of_freedom():
    from benchmarks.stats import difference

    # d = (1, 3): mean 2, sd sqrt(2); t(0.975, 1) = 12.7062 (tables): half width 12.7062 * sqrt(2) / sqrt(2)
    d = difference({0: 2.0, 1: 5.0}, {0: 1.0, 1: 2.0})
    assert d["kind"] == "paired" and d["n"] == 2 and d["delta"] == pytest.approx(2.0)
    assert d["low"] == pytest.approx(2 - 12.7062, abs=1e-3) and d["high"] == pytest.approx(2 + 12.7062, abs=1e-3)
    assert d["contains_zero"] is True


def test_the_linear_probe_reports_its_final_epoch_and_names_the_best_apart(demo_world, monkeypatch):
    """Accuracies 50, 80, 60 over three epochs: top1 is the final epoch's 60 (MoCo's protocol), best is epoch 2's 80;
    milestones floor(0.6 x 3) = 1 and floor(0.8 x 3) = 2."""
    from transfer.classification import linear

    per_epoch = iter([50.0, 80.0, 60.0])
    monkeypatch.setattr(linear, "topk_accuracy", lambda s, y: {"top1": next(per_epoch), "top5": 100.0})
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    preset = {"batch_size": 64, "lr": 0.1, "weight_decay": 0.0, "optimizer": "sgd", "epochs": 3, "milestones": [0.6, 0.8]}
    root = demo_world / "imagefolder"
    out = linear.train_linear(backbone, root / "train", root / "val", class_folders(root / "train"), preset, size=16, workers=0,
                              log=lambda *a: None)
    assert out["top1"] == 60.0 and out["final_epoch"] == 3
    assert out["best"] == {"top1": 80.0, "top5": 100.0, "epoch": 2}
    assert out["lr_per_epoch"] == pytest.approx([0.025, 0.0025, 0.00025]) and math.isclose(out["lr"], 0.025)  # milestones 1, 2


# the ranges a user's number must be in, written by hand from what each key means (not read from pretrain.config.config):
# key -> (integer?, lowest, highest, lowest excluded?)
HAND_RANGES = {
    "optim.epochs": (True, 1, None, False), "optim.batch_size": (True, 1, None, False),
    "optim.lr": (False, 0, None, True),  # a zero lr trains nothing
    "optim.momentum": (False, 0, 1, False), "optim.weight_decay": (False, 0, None, False),
    "optim.warmup_epochs": (False, 0, None, False), "optim.min_lr": (False, 0, None, False),
    "optim.lars_eta": (False, 0, None, True),  # LARS divides by it
    "augment.size": (True, 16, None, False),  # a ResNet's five halvings need >= 16 px
    **{f"augment.{k}": (False, 0, 1, False) for k in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p", "rotate_p")},
    "data.workers": (True, 0, None, False), "data.max_bad_fraction": (False, 0, 1, False),
    "train.seed": (True, 0, None, False), "train.log_every": (True, 1, None, False),
    "train.ckpt_every_steps": (True, 0, None, False), "train.ckpt_every_minutes": (False, 0, None, False),
    "train.keep_every_epochs": (True, 0, None, False), "train.max_steps": (True, 0, None, False),
    "method.momentum": (False, 0, 1, False), "method.queue_size": (True, 1, None, False),
    "method.temperature": (False, 0, None, True),  # logits are divided by it
    "method.pred_hidden": (True, 1, None, False), "method.lambd": (False, 0, None, False),
    "method.loss_scale": (False, 0, None, True),
    "method.proj.hidden": (True, 1, None, False), "method.proj.out": (True, 1, None, False),
    "method.proj.num_layers": (True, 1, None, False), "expand.dim": (True, 1, None, False),
}


def test_the_range_table_is_the_hand_written_one():
    from pretrain.config.config import RANGES

    assert RANGES == HAND_RANGES


def _boundary_cases():
    for key, (integer, lo, hi, open_lo) in HAND_RANGES.items():
        step = 1 if integer else 1e-6
        yield key, lo, not open_lo
        yield key, lo - step if not open_lo else lo, False
        if open_lo:
            yield key, lo + step, True
        if hi is not None:
            yield key, hi, True
            yield key, hi + step, False
        if integer:
            yield key, lo + 0.5 + (1 if open_lo else 0), False  # not an integer


@pytest.mark.parametrize("key,value,ok", list(_boundary_cases()), ids=lambda v: str(v))
def test_each_range_at_both_sides_of_each_end(key, value, ok):
    """Generated from the hand-written ranges: each end accepted or refused as written, one step past it refused."""
    from pretrain.config.config import ConfigError, load_config

    if ok:
        load_config(None, [f"{key}={value}"])
    else:
        with pytest.raises(ConfigError, match=rf"{key}={value!r} is out of range"):
            load_config(None, [f"{key}={value}"])
