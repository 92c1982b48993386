"""`run_transfer.py --task knn|linear_cls|colour_probe|invariance`: probes on an ImageFolder dataset, writing metrics.json.

`--stage 1..4` probes the pooled features of layer1..layer4 instead of the last stage's."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from pretrain.runs.cli import guarded, number
from pretrain.runs.files import write_json
from pretrain.runs.folder import git_commit

from ..common import check_output, request_identity, run_folder, start_state, transfer_identity
from ..protocol import label
from ..result import write_result
from ..weights import CheckpointError
from .colour_probe import colour_probe
from .datasets import REGISTRY, resolve, split_classes
from .features import build_backbone, extract_features
from .invariance import invariance_map, pick_images, plot
from .knn import knn_predict, per_class_accuracy, topk_accuracy
from .linear import FAST, PRESETS, linear_on_features, train_linear

INVARIANCE_IMAGES = 256  # the invariance map's standard image count


def get_args_parser(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(f"run_transfer.py --task {task}", description=__doc__)
    p.add_argument("--weights", required=True, help="pretraining checkpoint, converted backbone, torchvision state_dict, or 'random'")
    p.add_argument("--data", required=True, type=Path, help="ImageFolder root with train/ and val/ (or test/)")
    p.add_argument("--dataset", default=None, choices=list(REGISTRY), metavar="NAME",
                   help=f"dataset name for reports and presets ({', '.join(REGISTRY)}); leave out for another dataset")
    p.add_argument("--output", type=Path, default=None, help="run folder (default work_dirs/transfer/<task>_<weights>_s<seed>)")
    p.add_argument("--seed", type=number(int, 0), default=0)
    p.add_argument("--size", type=number(int, 16), default=224, help="crop size (224 for real data; the demo uses 64)")
    p.add_argument("--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"],
                   help="architecture when --weights random")
    p.add_argument("--workers", type=number(int, 0), default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=number(int, 1), default=128, help="feature extraction batch")
    p.add_argument("--stage", type=int, default=4, choices=[1, 2, 3, 4], help="probe the pooled features of layer1..layer4")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default <output>/feature_cache; several "
                   "runs may share one)")
    p.add_argument("--overwrite", action="store_true", help="start over in --output, deleting the run there")
    if task == "invariance":
        p.add_argument("--images", type=number(int, 2), default=INVARIANCE_IMAGES, help="images of the val split (spread over its classes)")
    elif task == "colour_probe":
        p.add_argument("--pairs", type=number(int, 1), default=1, help="view pairs per image (more pairs for small datasets)")
        p.add_argument("--epochs", type=number(int, 1), default=100, help="epochs of the linear probe on the pair features")
    elif task == "knn":
        p.add_argument("--k", type=number(int, 1), nargs="+", default=[20, 200])
        p.add_argument("--temperature", type=number(float, 0, low_open=True), default=0.07)
    else:
        p.add_argument("--preset", default=None, choices=list(PRESETS),
                       help=f"linear protocol: {', '.join(PRESETS)} (default: the dataset's; moco otherwise)")
        p.add_argument("--epochs", type=number(int, 1), default=None, help="override the epochs (of the preset, or of --fast's "
                       f"probe: {FAST['epochs']})")
        p.add_argument("--lr", type=number(float, 0, low_open=True), default=None,
                       help=f"override the lr (the preset's, for a batch of 256; or --fast's: {FAST['lr']})")
        p.add_argument("--fast", action="store_true", help="probe on cached non-augmented features (quick, not the protocol)")
    return p


OPTIONS = {"knn": ("k", "temperature"), "colour_probe": ("pairs", "epochs"), "linear_cls": ("preset", "epochs", "lr", "fast"),
           "invariance": ("images",)}


def main(task: str, argv: list[str]) -> int:
    return guarded(lambda: _main(task, argv), CheckpointError)


def _main(task: str, argv: list[str]) -> int:
    started = time.time()
    args = get_args_parser(task).parse_args(argv)
    out = (args.output or Path("work_dirs/transfer") / f"{task}_{Path(str(args.weights)).stem}_s{args.seed}").resolve()
    folder = run_folder(out, task)
    try:
        ds, train_dir, val_dir = resolve(args.dataset, args.data)
        classes, absent = split_classes(train_dir, val_dir)
        options = {k: getattr(args, k) for k in OPTIONS[task]}
        if task == "linear_cls" and options["preset"] is None:
            options["preset"] = ds.preset if ds.preset in PRESETS else "moco"
        ident = transfer_identity(task, args.weights, args.seed, args.data, dataset=ds.key, size=args.size,
                                  stage=args.stage, arch=args.arch if args.weights == "random" else None, **options)
        if start_state(folder, ident, task, args.overwrite) is None:
            return 0
        model, report = build_backbone(args.weights, args.arch, args.seed, args.stage)
    except (CheckpointError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    check_output(out)
    folder.open(ident, {"device": args.device, "workers": args.workers, "batch_size": args.batch_size, "git": git_commit()},
                request=request_identity(task, argv), overwrite=args.overwrite)
    write_json(out / "load_report.json", report)
    print(f"[{task}] {ds.title}: backbone {report['arch']} layer{args.stage} from {report['source']} "
          f"({report['loaded']} tensors loaded, missing {len(report['missing'])}, unexpected {len(report['unexpected'])})")
    cache = args.cache_dir or out / "feature_cache"
    if absent:
        print(f"[{task}] {len(absent)} training class(es) have no images in {val_dir}: {', '.join(absent[:10])}"
              f"{' ...' if len(absent) > 10 else ''} (per-class results: null; recorded as `absent_classes`)")
    features = lambda d, what: extract_features(model, d, args.size, args.batch_size, args.workers, args.device, cache, what,
                                                classes)
    changes = [f"image size 224 -> {args.size}"] if args.size != 224 else []
    if args.stage != 4 and task != "invariance":  # the map covers every stage
        changes.append(f"features of layer{args.stage} instead of layer4")
    result = dict(weights=args.weights, seed=args.seed, load_report=report, started=started, dataset=ds.title, stage=args.stage,
                  absent_classes=absent)
    if task == "invariance":
        if args.images != INVARIANCE_IMAGES:
            changes.append(f"images {INVARIANCE_IMAGES} -> {args.images}")
        paths = pick_images(val_dir, args.images)
        matrix = invariance_map(model.net, paths, args.size, args.device, args.batch_size, args.seed)
        plot(matrix, out / "invariance.png", f"invariance of pooled features ({report['source']})")
        write_result(out, task, protocol=label("demo" if ds.demo else "standard", changes), changes=changes,
                     protocol_name="invariance map (stage x augmentation), see README", metrics={"matrix": matrix},
                     images=len(paths), **result)
        folder.finish()
        print(f"[{task}] {ds.title}: {len(paths)} images -> {out / 'metrics.json'}, {out / 'invariance.png'}")
        return 0
    if task == "colour_probe":
        res = colour_probe(model, train_dir, val_dir, args.size, args.seed, args.pairs, args.epochs, args.batch_size, args.workers,
                           args.device)
        protocol = label("demo" if ds.demo else "paper", changes)
        details = dict(pairs=args.pairs, **res)
        name = f"colour-information probe (paper Sec. 5.2), layer{args.stage}"
    elif task == "knn":
        tf, ty, _ = features(train_dir, "train features")
        vf, vy, _ = features(val_dir, "val features")
        by_k = {}
        changes += [f"k {k} -> {len(tf)} (every training image)" for k in args.k if k > len(tf)]
        for k in args.k:
            s = knn_predict(tf, ty, vf, len(classes), k, args.temperature)
            by_k[f"k{k}"] = dict(topk_accuracy(s, vy), per_class=per_class_accuracy(s, vy, len(classes)))
        protocol = label("demo" if ds.demo else "standard", changes)
        res = by_k[f"k{args.k[0]}"]
        details = dict(k=args.k, temperature=args.temperature, by_k=by_k, classes=classes)
        name = f"cosine kNN (k={'/'.join(map(str, args.k))}, T={args.temperature})"
    else:
        preset_name = options["preset"]
        if args.fast:  # the fast probe's own schedule: --epochs / --lr apply to it
            preset = dict(FAST, name=f"fast linear probe on cached features ({FAST['epochs']} ep, lr {FAST['lr']})")
            changes.append("fast probe on cached centre-crop features (no augmentation, standardised features, cosine lr)")
        else:
            preset = dict(PRESETS[preset_name])
        for key in ("epochs", "lr"):
            if getattr(args, key) is not None:
                changes.append(f"{'fast probe ' if args.fast else ''}{key} {preset[key]} -> {getattr(args, key)}")
                preset[key] = getattr(args, key)
        if args.fast:
            tf, ty, _ = features(train_dir, "train features")
            vf, vy, _ = features(val_dir, "val features")
            res = linear_on_features(tf, ty, vf, vy, len(classes), epochs=preset["epochs"], lr=preset["lr"], seed=args.seed)
        else:
            res = train_linear(model, train_dir, val_dir, classes, preset, args.size, args.workers, args.device, args.seed)
        protocol = label("demo" if preset_name == "demo" or ds.demo else preset["label"], changes)
        details = dict(preset=preset_name, preset_values=preset, classes=classes, **res)
        name = preset["name"] + ("" if args.fast else "; top1/top5: final epoch (best: `best`)")
    metrics = {k: res[k] for k in ("top1", "top5") if k in res}
    write_result(out, task, protocol=protocol, changes=changes, protocol_name=name, metrics=metrics,
                 **result, **{k: v for k, v in details.items() if k not in metrics})
    folder.finish()
    print(f"[{task}] {ds.title}: top-1 {metrics['top1']:.2f}" + (f"  top-5 {metrics['top5']:.2f}" if "top5" in metrics else "")
          + f"  -> {out / 'metrics.json'}")
    return 0
