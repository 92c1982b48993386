"""Parameter-recording augmentations: exact replay, switched-off types, fixed-length vectors."""
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from pretrain.augment import AUG_TYPES, PARAM_DIM, PARAM_SLICES, AugPipeline


@pytest.fixture
def image():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(3, 80, 100, generator=g) * 255).to(torch.uint8)


@pytest.mark.parametrize("seed", range(8))
def test_replay_reproduces_view(image, seed):
    pipe = AugPipeline(size=48, solarize_p=0.5, types=AUG_TYPES)
    view, params = pipe(image, torch.Generator().manual_seed(seed))
    assert params.shape == (PARAM_DIM,)
    assert torch.equal(pipe.apply(image, params.clone()), view)


def test_all_types_get_applied_over_draws(image):
    pipe = AugPipeline(size=32, solarize_p=0.5, types=AUG_TYPES)
    g = torch.Generator().manual_seed(1)
    vs = torch.stack([pipe.sample(80, 100, g) for _ in range(200)])
    for flag in (0, 6, 7, 16, 17, 19):
        assert 0 < vs[:, flag].mean() <= 1
    assert (vs[vs[:, 7] == 1][:, 12:16].sort(1).values == torch.arange(4.0)).all()  # orders are permutations


def test_switched_off_types_leave_image_untouched(image):
    pipe = AugPipeline(size=40, types=(), solarize_p=1.0, flip_p=1.0, jitter_p=1.0, gray_p=1.0, blur_p=1.0)
    view, params = pipe(image, torch.Generator().manual_seed(0))
    plain = F.normalize(F.to_dtype(F.resize(image, [40, 40], antialias=True), torch.float32, scale=True),
                        list(pipe.mean), list(pipe.std))
    assert torch.equal(view, plain)
    assert params[PARAM_SLICES["crop"]].tolist() == [0, 0, 0, 1, 1, 1]
    assert params[PARAM_SLICES["jitter"]].tolist() == [0, 1, 1, 1, 0, 0, 1, 2, 3]
    for t in ("flip", "gray", "blur", "solarize"):
        assert params[PARAM_SLICES[t]].abs().sum() == 0


@pytest.mark.parametrize("only", ["flip", "gray", "solarize"])
def test_single_type_applies_exactly_that(image, only):
    pipe = AugPipeline(size=40, types=(only,), flip_p=1.0, gray_p=1.0, solarize_p=1.0)
    view, params = pipe(image, torch.Generator().manual_seed(0))
    base = F.resize(image, [40, 40], antialias=True)
    op = {"flip": F.horizontal_flip, "gray": lambda x: F.rgb_to_grayscale(x, num_output_channels=3),
          "solarize": lambda x: F.solarize(x, 128)}[only]
    want = F.normalize(F.to_dtype(op(base), torch.float32, scale=True), list(pipe.mean), list(pipe.std))
    assert torch.equal(view, want) and params[PARAM_SLICES[only]][0] == 1


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugPipeline(types=("crop", "rotate90"))
