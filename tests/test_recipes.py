"""Every published preset is the recipe its name claims: its values pinned against the sources' numbers
(written out here by hand from the papers and the official code, not read from the configs), the per-view
augmentation frequencies of the asymmetric recipes within binomial bounds, and the mechanisms these
recipes need (bicubic resize, cosine EMA, LARS exclusions, the biases' own lr, zero_init_residual)."""
import math

import pytest
import torch

from pretrain.config.config import load_config
from pretrain.engine.build import active_pairs, build_model, build_transform
from pretrain.engine.optim import build_optimizer, ema_momentum, set_lr

from .conftest import ROOT

P = ROOT / "configs/pretrain"
# the sources' numbers: BYOL: Grill et al. 2020, App. B (Table 6), C, J; Barlow Twins: facebookresearch/barlowtwins
# main.py @8e8d284 (the later release); MoCo v2: facebookresearch/moco main_moco.py + README (v2: --mlp --aug-plus --cos);
# SimSiam: facebookresearch/simsiam main_simsiam.py
PUBLISHED = {
    "byol": {"method.momentum": 0.996, "method.momentum_schedule": "cosine", "method.proj.hidden": 4096, "method.proj.out": 256,
             "method.proj.num_layers": 2, "method.pred_hidden": 4096, "optim.name": "lars", "optim.lr": 0.2,
             "optim.weight_decay": 1.5e-6, "optim.warmup_epochs": 10, "optim.schedule_unit": "step", "optim.momentum": 0.9,
             "optim.lars_eta": 0.001, "augment.crop_scale": [0.08, 1.0], "augment.interpolation": "bicubic",
             "augment.jitter": [0.4, 0.4, 0.2, 0.1], "augment.jitter_p": 0.8, "augment.gray_p": 0.2,
             "augment.blur_sigma": [0.1, 2.0], "blur_p": (1.0, 0.1), "solarize_p": (0.0, 0.2), "optim.min_lr": 0.0},
    "barlowtwins": {"method.lambd": 0.0051, "method.loss_scale": 1.0, "method.proj.hidden": 8192, "method.proj.out": 8192,
                    "method.proj.num_layers": 3, "method.zero_init_residual": True, "optim.name": "lars", "optim.lr": 0.2,
                    "optim.bias_lr": 0.0048, "optim.weight_decay": 1e-6, "optim.warmup_epochs": 10,
                    "optim.schedule_unit": "step", "optim.min_lr": 0.2 * 0.001, "optim.lars_eta": 0.001,
                    "optim.momentum": 0.9, "augment.crop_scale": [0.08, 1.0], "augment.interpolation": "bicubic",
                    "augment.jitter": [0.4, 0.4, 0.2, 0.1], "augment.jitter_p": 0.8, "augment.gray_p": 0.2,
                    "augment.blur_sigma": [0.1, 2.0], "blur_p": (1.0, 0.1), "solarize_p": (0.0, 0.2)},
    "mocov2": {"method.momentum": 0.999, "method.momentum_schedule": "constant", "method.queue_size": 65536,
               "method.temperature": 0.2, "method.proj.hidden": 2048, "method.proj.out": 128, "method.proj.num_layers": 2,
               "method.proj.hidden_bn": False, "method.zero_init_residual": False, "optim.name": "sgd", "optim.lr": 0.03,
               "optim.weight_decay": 1e-4, "optim.momentum": 0.9, "optim.schedule_unit": "epoch", "optim.warmup_epochs": 0,
               "train.sync_bn": False, "augment.crop_scale": [0.2, 1.0], "augment.interpolation": "bilinear",
               "augment.jitter": [0.4, 0.4, 0.4, 0.1], "augment.gray_p": 0.2, "blur_p": (0.5, 0.5), "solarize_p": (0.0, 0.0)},
    "simsiam": {"method.proj.hidden": 2048, "method.proj.out": 2048, "method.proj.num_layers": 3, "method.proj.last_bn_affine": False,
                "method.pred_hidden": 512, "method.zero_init_residual": True, "optim.name": "sgd", "optim.lr": 0.05,
                "optim.weight_decay": 1e-4, "optim.momentum": 0.9, "optim.fix_pred_lr": True, "optim.schedule_unit": "epoch",
                "augment.crop_scale": [0.2, 1.0], "augment.jitter": [0.4, 0.4, 0.4, 0.1], "augment.gray_p": 0.2,
                "blur_p": (0.5, 0.5), "solarize_p": (0.0, 0.0)},
}
PRESETS = {"byol": ["byol-published", "byol-hier-published"], "barlowtwins": ["barlowtwins-published", "barlowtwins-hier-published"],
           "mocov2": ["mocov2", "mocov2-hier"], "simsiam": ["simsiam-published", "simsiam-hier-published"]}


def _get(cfg, key):
    if key in ("blur_p", "solarize_p"):
        return tuple(dict(cfg["augment"], **v)[key] for v in cfg["augment"]["views"])
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("fam,name", [(f, n) for f, names in PRESETS.items() for n in names])
def test_published_preset_equals_its_source_key_by_key(fam, name):
    cfg = load_config(P / f"{name}_resnet50_8xb32-coslr-200e_in100.yaml")
    wrong = {k: (_get(cfg, k), v) for k, v in PUBLISHED[fam].items()
             if (_get(cfg, k) != pytest.approx(v) if isinstance(v, float) else _get(cfg, k) != v)}
    assert not wrong, f"(preset, source) differ: {wrong}"


@pytest.mark.parametrize("name", ["byol-published", "barlowtwins-hier-published"])
def test_asymmetric_views_draw_blur_and_solarize_at_their_published_rates(name):
    """4000 draws of the stage-4 pair's two views: blur 1.0 / 0.1 and solarize 0 / 0.2 within 4.5 binomial sigmas."""
    cfg = load_config(P / f"{name}_resnet50_8xb32-coslr-200e_in100.yaml")
    tf = build_transform(cfg, "cpu")
    v1, v2 = tf.pairs[-1].views
    g, n = torch.Generator().manual_seed(0), 4000
    drawn = [torch.stack([pipe.sample(375, 500, g) for _ in range(n)]) for pipe in (v1, v2)]
    for k, (blur, sol) in enumerate([(1.0, 0.0), (0.1, 0.2)]):
        for col, p in ((17, blur), (19, sol)):
            freq = float(drawn[k][:, col].mean())
            tol = 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9
            assert abs(freq - p) <= tol, (name, k, col, freq, p)
    # crop areas follow scale U(0.08, 1) before the aspect-ratio rejection: some views below the 0.2 floor
    assert float((drawn[0][:, 5] < 0.2).float().mean()) > 0.05
    assert active_pairs(cfg)[0][-1]["types"][-1] == "solarize"


def test_bicubic_resize_is_torchvision_bicubic():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    from pretrain.transforms.augment import AugPipeline

    img = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pipe = AugPipeline(size=32, types=("crop",), interpolation="bicubic")
    v = pipe.sample(50, 70, torch.Generator().manual_seed(2))
    i, j, h, w = (round(float(v[1]) * 50), round(float(v[2]) * 70), round(float(v[3]) * 50), round(float(v[4]) * 70))
    want = F.resized_crop(img, i, j, h, w, [32, 32], interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(pipe.geometric(img, v), want)
    assert not torch.equal(AugPipeline(size=32, types=("crop",)).geometric(img, v), want)


def test_the_trainer_gives_the_target_the_scheduled_momentum_each_step(demo_world, tmp_path):
    """BYOL + method, 3 steps of 6, momentum_schedule cosine: update_target gets 1 - 0.01 (cos(pi k / 6) + 1) / 2."""
    from pretrain.engine.trainer import Pretrainer

    from .test_pretrain_run import TINY, _small_folder

    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = Pretrainer(load_config(P / "byol-hier_resnet18_1xb64-coslr-4e_demo.yaml",
                               [*TINY, "optim.batch_size=8", "data.workers=0", f"data.train={data}", "optim.epochs=2",
                                "train.max_steps=3", "method.momentum_schedule=cosine", f"train.output={tmp_path / 'o'}"]))
    got, update = [], t.model.update_target
    t.model.update_target = lambda m=None: (got.append(m), update(m))
    t.run()
    assert got == pytest.approx([1 - 0.01 * (math.cos(math.pi * k / 6) + 1) / 2 for k in range(3)])


def test_byol_ema_rises_from_its_base_to_one_with_a_cosine():
    assert ema_momentum(0.996, "cosine", 0, 100) == pytest.approx(0.996)
    assert ema_momentum(0.996, "cosine", 50, 100) == pytest.approx(0.998)  # 1 - 0.004 (cos(pi/2) + 1) / 2
    assert ema_momentum(0.996, "cosine", 25, 100) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    assert ema_momentum(0.996, "cosine", 100, 100) == pytest.approx(1.0)
    assert ema_momentum(0.99, "constant", 70, 100) == 0.99


def _small(name, *extra):
    return load_config(P / f"{name}_resnet50_8xb32-coslr-200e_in100.yaml",
                       ["method.arch=resnet18", "method.proj={hidden: 32, out: 16}", "method.pred_hidden=8",
                        "hier.head_reduce=[8, 8, 8]", "expand.dim=8", *extra])


def test_lars_excludes_every_bias_and_norm_including_the_predictors():
    cfg = _small("byol-hier-published")
    model = build_model(cfg)
    groups = {g["name"]: g for g in build_optimizer(model, cfg, 0.1).param_groups}
    by_id = {id(p): n for n, p in model.named_parameters()}
    for name, g in groups.items():
        dims = {p.ndim for p in g["params"]}
        assert (dims == {1}) == name.endswith("no_decay") and g["lars_exclude"] == name.endswith("no_decay"), name
        assert (g["weight_decay"] == 0) == name.endswith("no_decay"), name
    assert all(".predictors." in f".{by_id[id(p)]}" for p in groups["pred_no_decay"]["params"])
    assert len(groups["pred_no_decay"]["params"]) > 0


@pytest.mark.parametrize("world", [1, 4])
def test_barlow_twins_biases_get_their_own_lr_divided_by_the_process_count(world):
    cfg = _small("barlowtwins-published")
    opt = build_optimizer(build_model(cfg), cfg, 0.2 * 256 / 256, world)
    set_lr(opt, 0.5, 0.2, fix_pred_lr=False)  # somewhere in the schedule: weights at 0.5
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["decay"] == pytest.approx(0.5) and lrs["no_decay"] == pytest.approx(0.5 * 0.0048 / 0.2 / world)


def test_zero_init_residual_is_per_recipe():
    moco = build_model(_small("mocov2")).backbone
    simsiam = build_model(_small("simsiam-published")).backbone
    assert float(moco.layer1[0].bn2.weight.abs().sum()) > 0  # resnet18 BasicBlock: bn2 closes the residual branch
    assert float(simsiam.layer1[0].bn2.weight.abs().sum()) == 0


def test_the_recipe_table_shows_every_preset_and_the_sources():
    from pretrain.config import recipes

    text = recipes.table(sorted(P.glob("*.yaml")))
    for path in P.glob("*.yaml"):
        assert f"`{path.stem}`" in text
    assert "lambda 0.0051, scale 1" in text and "0.0048 x B/256 / W" in text and "0.996 -> 1 (cosine)" in text
    assert text.count("published recipe**") == 4 and "@8e8d284" in text


def test_the_readme_embeds_the_table_the_configs_give_today():
    from pretrain.config import recipes

    assert recipes.table(sorted(P.glob("*.yaml"))) in (ROOT / "README.md").read_text(), \
        "README's recipe table is stale: paste `python -m pretrain.config.recipes` into its <details> block"
