"""Could kornia do the batched photometric step? Its functional ops against this project's, on the
same recorded parameters: equality with torchvision's functional ops (the reference both must match)
and speed of the batched step, side by side.   `python -m benchmarks.perf.kornia_compare`
(needs `pip install kornia==0.9.0`; not a dependency of the project).

kornia's `augmentation.ColorJitter` draws one order of the four jitter ops per batch; the method's
views record one order per view, so a replay needs the per-sample ordering of
`photometric.color_jitter` with kornia's four functions plugged in, which is what is timed here.
Writes results/kornia_compare.json.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.io import decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from pretrain.config.config import load_config
from pretrain.engine.build import build_transform
from pretrain.transforms import photometric as P
from pretrain.transforms.params import BLUR_SIGMA, JITTER_FACTORS

from .augment_throughput import CONFIGS, ROOT, write_jpegs


def kornia_ops():
    import kornia

    e = kornia.enhance
    jitter = (e.adjust_brightness_accumulative, e.adjust_contrast_with_mean_subtraction,
              e.adjust_saturation_with_gray_subtraction, lambda x, f: e.adjust_hue(x, f * 2 * math.pi))
    blur = lambda x, sigma, k: kornia.filters.gaussian_blur2d(x, (k, k), sigma.view(-1, 1).expand(-1, 2), "reflect")
    return kornia.__version__, jitter, blur


def kornia_photometric(views, params, jitter, blur, mean, std):
    """The project's `photometric` with kornia's jitter ops, blur and grayscale."""
    import kornia

    x = views.float().div_(255)
    p = params.float()
    plan = P.plan_to(P.index_plan(params.cpu()), x.device)
    x = P.rotate(x, plan[:3])
    x = P.color_jitter(x, p[:, JITTER_FACTORS], plan[3:19], ops=jitter)
    x = P._apply(x, plan[19], lambda s, sig: blur(s, sig, P.blur_kernel(x.shape[-1])), p[:, BLUR_SIGMA])
    x = P._apply(x, plan[20], lambda s: kornia.color.rgb_to_grayscale(s).expand(-1, 3, -1, -1))
    x = P._apply(x, plan[21], lambda s: torch.where(s >= P.SOLARIZE_THRESHOLD, 1 - s, s))
    return kornia.enhance.normalize(x, torch.tensor(mean), torch.tensor(std))


def op_errors(jitter, blur) -> dict:
    """Max |difference| to torchvision's float ops per op, for kornia and for this project (random images
    with grey and saturated pixels, factors over the configured ranges, hue at ±0.1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 37, 41, generator=g)
    x[0] = x[0, :1].expand(3, -1, -1)
    x[1, :, :4] = 0
    x[1, :, 4:8] = 1
    f = torch.rand(8, generator=g) * 0.8 + 0.6
    hue = torch.cat([torch.tensor([0.1, -0.1]), torch.rand(6, generator=g) * 0.2 - 0.1])
    sigma = torch.rand(8, generator=g) * 1.9 + 0.1
    refs = {"brightness": (TF.adjust_brightness, f), "contrast": (TF.adjust_contrast, f),
            "saturation": (TF.adjust_saturation, f), "hue": (TF.adjust_hue, hue)}
    out = {}
    for (name, (ref, fac)), ours, theirs in zip(refs.items(), P.JITTER_OPS, jitter):
        want = torch.stack([ref(x[i], float(fac[i])) for i in range(len(x))])
        out[name] = {"project": (ours(x.clone(), fac) - want).abs().max().item(),
                     "kornia": (theirs(x.clone(), fac) - want).abs().max().item()}
    want = torch.stack([TF.gaussian_blur(x[i], [7, 7], [float(sigma[i])] * 2) for i in range(len(x))])
    out["blur"] = {"project": (P.gaussian_blur(x, sigma, 7) - want).abs().max().item(),
                   "kornia": (blur(x, sigma, 7) - want).abs().max().item()}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/kornia_compare.json")
    args = p.parse_args(argv)
    try:
        version, jitter, blur = kornia_ops()
    except ImportError:
        print("kornia is not installed: pip install kornia==0.9.0 (only this comparison needs it)")
        return 2
    torch.set_num_threads(1)
    cfg = load_config(ROOT / CONFIGS["method"], ["augment.device=train"])
    tf = build_transform(cfg)
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        imgs = [decode_image(read_file(str(q))) for q in write_jpegs(Path(tmp), args.images)]
    batch = [tf(im, g) for im in imgs]
    views = torch.cat([torch.stack(v) for v in zip(*(b[0] for b in batch))])
    params = torch.cat([torch.stack(q) for q in zip(*(b[1] for b in batch))])
    mean, std = tf.pairs[0].views[0].mean, tf.pairs[0].views[0].std
    runs = {"project": lambda: [P.photometric(views[i:i + args.images], params[i:i + args.images], mean, std)
                                for i in range(0, len(views), args.images)],
            "kornia": lambda: [kornia_photometric(views[i:i + args.images], params[i:i + args.images], jitter, blur, mean, std)
                               for i in range(0, len(views), args.images)]}
    same = (torch.cat(runs["project"]()) - torch.cat(runs["kornia"]())).abs().max().item()
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    ms = {k: 1000 * statistics.median(v) / len(views) for k, v in times.items()}
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": 1, "torch": torch.__version__},
              "kornia": version, "views": len(views), "size": cfg["augment"]["size"],
              "max_abs_error_vs_torchvision_float": op_errors(jitter, blur),
              "max_abs_difference_project_vs_kornia_normalised_views": same,
              "batched_step_ms_per_view_cpu": ms, "kornia_over_project_time": ms["kornia"] / ms["project"]}
    from pretrain.runs.files import write_json

    write_json(args.out, result)
    print(f"kornia {version}: {ms['kornia']:.2f} ms/view vs the project's {ms['project']:.2f} ms/view "
          f"(x{result['kornia_over_project_time']:.2f}); views differ by at most {same:.2e}; per-op errors vs torchvision: "
          + ", ".join(f"{k} {v['kornia']:.1e} (ours {v['project']:.1e})" for k, v in result["max_abs_error_vs_torchvision_float"].items())
          + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
