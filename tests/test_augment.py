"""Augmentations against torchvision (the reference the code under test did not produce), given the
recorded parameters: the crop box equals torchvision's RandomResizedCrop draw; every photometric op
equals torchvision's functional op on float images; whole views equal torchvision's ops composed in
the authors' order (float: to 1e-5; torchvision's uint8 path, which truncates after every op: within
that rounding); the batched path over (views x batch) equals the per-image path; the two
`augment.device` modes draw identical parameter vectors."""
import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from benchmarks.perf.torchvision_views import torchvision_view
from pretrain.config.config import ConfigError, load_config
from pretrain.engine.build import build_transform
from pretrain.transforms import photometric as P
from pretrain.transforms.augment import AUG_TYPES, PARAM_DIM, PARAM_SLICES, AugPipeline
from pretrain.transforms.augment import IMAGENET_STD as STD
from pretrain.transforms.params import JITTER, JITTER_ORDER, ROTATE, ROTATE_K

from .test_fidelity import AUTHORS

ALL = dict(types=AUG_TYPES, solarize_p=0.5, rotate_p=0.5)


def _image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, h, w, generator=g) * 255).to(torch.uint8)


def _floats(n=8, h=37, w=41):
    """Random [0, 1] images with a grey image, black and white bands (the HSV edge cases)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, h, w, generator=g)
    x[0] = x[0, :1].expand(3, -1, -1)
    x[1, :, :4], x[1, :, 4:8] = 0.0, 1.0
    return x


@pytest.mark.parametrize("shape", [(80, 100), (375, 500), (30, 400), (500, 20), (7, 9)])
def test_crop_box_is_torchvision_random_resized_crop(shape):
    """Same seed, same stream: our box is exactly RandomResizedCrop.get_params' with the authors' scale (0.2, 1) and
    torchvision's ratio (3/4, 4/3), written here (fallback shapes included)."""
    pipe = AugPipeline()
    for seed in range(100):
        torch.manual_seed(seed)
        want = T.RandomResizedCrop.get_params(torch.empty(3, *shape), [0.2, 1.0], [3 / 4, 4 / 3])
        assert pipe._crop_box(*shape, torch.Generator().manual_seed(seed)) == tuple(want), (shape, seed)


FACTORS = torch.tensor([0.6, 1.4, 1.0, 0.9, 1.23, 0.61, 1.39, 0.75])
HUES = torch.tensor([0.1, -0.1, 0.0, 0.05, -0.033, 0.099, -0.07, 0.01])


@pytest.mark.parametrize("name,ref,factors", [
    ("brightness", TF.adjust_brightness, FACTORS), ("contrast", TF.adjust_contrast, FACTORS),
    ("saturation", TF.adjust_saturation, FACTORS), ("hue", TF.adjust_hue, HUES)])
def test_each_jitter_op_equals_torchvision(name, ref, factors):
    x = _floats()
    op = dict(zip(("brightness", "contrast", "saturation", "hue"), P.JITTER_OPS))[name]
    got = op(x.clone(), factors)
    want = torch.stack([ref(x[i], float(factors[i])) for i in range(len(x))])
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)


@pytest.mark.parametrize("kernel", [3, 7, 23])
def test_blur_with_a_sigma_per_sample_equals_torchvision(kernel):
    x = _floats(h=48, w=45)
    sigma = torch.tensor([0.1, 2.0, 1.0, 0.5, 1.7, 0.3, 1.1, 0.9])
    want = torch.stack([TF.gaussian_blur(x[i], [kernel, kernel], [float(sigma[i])] * 2) for i in range(len(x))])
    torch.testing.assert_close(P.gaussian_blur(x, sigma, kernel), want, atol=2e-6, rtol=0)  # 23x23 taps vs 2x23
    assert P.blur_kernel(224) == 23 and P.blur_kernel(96) == 9 and P.blur_kernel(64) == 7  # the authors' size//20*2+1


def test_rotation_grayscale_solarize_equal_torchvision():
    x = _floats(4, 33, 33)
    k = torch.tensor([0, 1, 2, 3])
    params = torch.zeros(4, PARAM_DIM)
    params[:, ROTATE], params[:, ROTATE_K] = torch.tensor([1.0, 1, 1, 0]), k.float()
    got = P.rotate(x.clone(), P.index_plan(params)[:3])
    for i in range(3):
        torch.testing.assert_close(got[i], TF.rotate(x[i], 90.0 * int(k[i])), atol=0, rtol=0)
    assert torch.equal(got[3], x[3])  # not applied: untouched whatever k says
    torch.testing.assert_close(P.luma(x).expand(-1, 3, -1, -1), TF.rgb_to_grayscale(x, 3), atol=2e-7, rtol=0)
    u8 = (x * 255).to(torch.uint8)
    on_grid = u8.float() / 255  # on the uint8 grid solarize equals torchvision's uint8 solarize at 128
    sol = torch.where(on_grid >= P.SOLARIZE_THRESHOLD, 1 - on_grid, on_grid)
    assert torch.equal((sol * 255).round().to(torch.uint8), TF.solarize(u8, 128))


def test_jitter_runs_each_sample_in_its_own_order_and_skips_unapplied():
    x = _floats()
    g = torch.Generator().manual_seed(1)
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(len(x))]).float()
    factors = torch.stack([FACTORS, FACTORS.flip(0), FACTORS.roll(3), HUES], 1)
    applied = torch.tensor([True, True, False, True, True, True, True, False])
    params = torch.zeros(len(x), PARAM_DIM)
    params[:, JITTER], params[:, JITTER_ORDER] = applied.float(), order
    got = P.color_jitter(x.clone(), factors, P.index_plan(params)[3:19])
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(len(x)):
        want = x[i]
        if applied[i]:
            for k in order[i].int().tolist():
                want = fns[k](want, float(factors[i, k]))
        torch.testing.assert_close(got[i], want, atol=3e-6, rtol=0, msg=lambda m, i=i: f"sample {i}: {m}")
    assert torch.equal(got[2], x[2]) and torch.equal(got[7], x[7])


@pytest.mark.parametrize("shape,size", [((75, 101), 33), ((120, 90), 40), ((64, 64), 32)])
def test_views_equal_torchvision_composed_from_the_recorded_parameters(shape, size):
    """The view a pipeline makes = torchvision's ops replayed from its parameter vector (every type on)."""
    img = _image(*shape)
    pipe = AugPipeline(size=size, **ALL)
    g = torch.Generator().manual_seed(sum(shape))
    drawn = torch.zeros(PARAM_DIM)
    for _ in range(24):
        view, v = pipe(img, g)
        assert view.shape == (3, size, size) and v.shape == (PARAM_DIM,)
        torch.testing.assert_close(view, torchvision_view(img, v, size, as_float=True), atol=1e-5, rtol=0)
        drawn += v
    assert drawn[0] == 24  # the crop is always applied; every other type in some of the 24 views, not in others
    for flag in (6, 7, 16, 17, 19, 20):
        assert 0 < drawn[flag] < 24, flag


def test_views_differ_from_torchvisions_uint8_path_only_by_its_rounding():
    """torchvision on uint8 truncates after each of up to 7 ops (4 jitter, blur, gray, solarize): at most
    8 levels of 255 per pixel, about 2 on average (measured 5.7 / 1.6)."""
    img = _image(75, 101)
    pipe = AugPipeline(size=33, **ALL, jitter_p=1.0, blur_p=1.0)
    g = torch.Generator().manual_seed(0)
    std = torch.tensor(STD).view(3, 1, 1)
    diffs = []
    for _ in range(50):
        view, v = pipe(img, g)
        diffs.append(((view - torchvision_view(img, v, 33)) * std * 255).abs())
    d = torch.stack(diffs)
    assert d.max() <= 8 and d.mean() <= 2.5, (d.max(), d.mean())


def test_switched_off_types_leave_the_image_untouched():
    img = _image(80, 100)
    pipe = AugPipeline(size=40, types=(), solarize_p=1.0, flip_p=1.0, jitter_p=1.0, gray_p=1.0, blur_p=1.0)
    view, params = pipe(img, torch.Generator().manual_seed(0))
    plain = TF.normalize(TF.to_dtype(TF.resize(img, [40, 40], antialias=True), torch.float32, scale=True),
                         [0.485, 0.456, 0.406], STD)
    torch.testing.assert_close(view, plain, atol=1e-6, rtol=0)
    assert params[PARAM_SLICES["crop"]].tolist() == [0, 0, 0, 1, 1, 1]
    assert params[PARAM_SLICES["jitter"]].tolist() == [0, 1, 1, 1, 0, 0, 1, 2, 3]  # identity factors when skipped
    for t in ("flip", "gray", "blur", "solarize", "rotate"):
        assert params[PARAM_SLICES[t]].abs().sum() == 0


def _authors_transforms(size=40):
    over = [f"augment.size={size}", "hier.strength.enabled=false"]
    return (build_transform(load_config(AUTHORS, over + ["augment.device=loader"])),
            build_transform(load_config(AUTHORS, over + ["augment.device=train"])))


def _batch(tf, images, seed):
    g = torch.Generator().manual_seed(seed)
    out = [tf(img, g) for img in images]
    return [torch.stack(v) for v in zip(*(o[0] for o in out))], [torch.stack(p) for p in zip(*(o[1] for o in out))]


@pytest.mark.parametrize("per_view", [False, True])
def test_batched_path_equals_the_per_image_path_for_whole_pairs(per_view):
    """The authors' four pairs (8 views) of 3 images of odd sizes: DeviceAugment over the (views x batch)
    tensor gives the loader mode's views, from identical parameter vectors."""
    loader, train = _authors_transforms()
    images = [_image(75, 101, 1), _image(121, 90, 2), _image(64, 64, 3)]
    views, params = _batch(loader, images, seed=7)
    geo, params_t = _batch(train, images, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(params, params_t))  # the embedding sees exactly what was applied
    assert all(v.dtype == torch.uint8 and v.shape == (3, 3, 40, 40) for v in geo) and len(geo) == 8
    got = P.DeviceAugment((0.485, 0.456, 0.406), STD, per_view=per_view)(geo, params_t)
    for k, (a, b) in enumerate(zip(got, views)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=lambda m, k=k: f"view {k}: {m}")
    jittered = torch.stack(params)[:, :, 7]
    assert 0 < jittered.mean() < 1  # both applied and skipped jitter are in the batch


def test_augment_device_setting_is_checked():
    with pytest.raises(ConfigError, match="augment.device"):
        load_config(AUTHORS, ["augment.device=gpu"])
    from pretrain.engine.build import resolve_augment_device

    cfg = load_config(AUTHORS)
    assert resolve_augment_device(cfg, "cpu") == "loader" and resolve_augment_device(cfg, "cuda") == "train"


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugPipeline(types=("crop", "rotate90"))
