"""`run_transfer.py --task knn|linear_cls|colour_probe`: probes on an ImageFolder dataset, writing metrics.json.

`--stage 1..4` probes the pooled features of layer1..layer4 instead of the last stage's."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..common import run_record, write_json
from ..weights import CheckpointError
from .colour_probe import colour_probe
from .datasets import REGISTRY, resolve
from .features import build_backbone, extract_features
from .knn import knn_predict, per_class_accuracy, topk_accuracy
from .linear import PRESETS, linear_on_features, train_linear


def get_args_parser(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(f"run_transfer.py --task {task}", description=__doc__)
    p.add_argument("--weights", required=True, help="pretraining checkpoint, converted backbone, torchvision state_dict, or 'random'")
    p.add_argument("--data", required=True, type=Path, help="ImageFolder root with train/ and val/ (or test/)")
    p.add_argument("--dataset", default=None, help=f"dataset name for reports and presets ({', '.join(REGISTRY)})")
    p.add_argument("--output", type=Path, default=None, help="run folder (default work_dirs/transfer/<task>_<weights>_s<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=224, help="crop size (224 for real data; the demo uses 64)")
    p.add_argument("--arch", default="resnet50", help="architecture when --weights random")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=128, help="feature extraction batch")
    p.add_argument("--stage", type=int, default=4, choices=[1, 2, 3, 4], help="probe the pooled features of layer1..layer4")
    if task == "colour_probe":
        p.add_argument("--pairs", type=int, default=1, help="view pairs per image (more pairs for small datasets)")
        p.add_argument("--epochs", type=int, default=100, help="epochs of the linear probe on the pair features")
    elif task == "knn":
        p.add_argument("--k", type=int, nargs="+", default=[20, 200])
        p.add_argument("--temperature", type=float, default=0.07)
    else:
        p.add_argument("--preset", default=None, help=f"linear protocol: {', '.join(PRESETS)} (default: the dataset's; moco otherwise)")
        p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
        p.add_argument("--lr", type=float, default=None, help="override the preset's lr (for a batch of 256)")
        p.add_argument("--fast", action="store_true", help="probe on cached non-augmented features (quick, not the protocol)")
    return p


def main(task: str, argv: list[str]) -> int:
    args = get_args_parser(task).parse_args(argv)
    out = args.output or Path("work_dirs/transfer") / f"{task}_{Path(str(args.weights)).stem}_s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        ds, train_dir, val_dir = resolve(args.dataset, args.data)
        model, report = build_backbone(args.weights, args.arch, args.seed, args.stage)
    except (CheckpointError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_json(out / "load_report.json", report)
    print(f"[{task}] {ds.title}: backbone {report['arch']} layer{args.stage} from {report['source']} "
          f"({report['loaded']} tensors loaded, missing {len(report['missing'])}, unexpected {len(report['unexpected'])})")
    cache = out.parent / ".feature_cache"
    changes = [f"image size 224 -> {args.size}"] if args.size != 224 else []
    if args.stage != 4:
        changes.append(f"features of layer{args.stage} instead of layer4")
    stage = {"stage": args.stage}
    if task == "colour_probe":
        res = colour_probe(model, train_dir, val_dir, args.size, args.seed, args.pairs, args.epochs, args.batch_size, args.workers,
                           args.device)
        protocol = "demo" if ds.key == "demo" else ("non-standard" if changes else "paper")
        metrics = dict(run_record(task, args.weights, args.seed, protocol, changes, pairs=args.pairs, **stage,
                                  protocol_name=f"colour-information probe (paper Sec. 5.2), layer{args.stage}"),
                       dataset=ds.title, **res, load_report=report)
    elif task == "knn":
        tf, ty, classes = extract_features(model, train_dir, args.size, args.batch_size, args.workers, args.device, cache, "train features")
        vf, vy, _ = extract_features(model, val_dir, args.size, args.batch_size, args.workers, args.device, cache, "val features")
        result = {}
        for k in args.k:
            s = knn_predict(tf, ty, vf, len(classes), k, args.temperature)
            acc = topk_accuracy(s, vy)
            result[f"k{k}"] = dict(acc, per_class=per_class_accuracy(s, vy, len(classes)))
        main_k = f"k{args.k[0]}"
        protocol = "demo" if ds.key == "demo" else ("non-standard" if changes else "standard")
        metrics = dict(run_record(task, args.weights, args.seed, protocol, changes, k=args.k, temperature=args.temperature, **stage,
                                  protocol_name=f"cosine kNN (k={'/'.join(map(str, args.k))}, T={args.temperature})"),
                       dataset=ds.title, top1=result[main_k]["top1"], top5=result[main_k]["top5"], by_k=result,
                       classes=classes, load_report=report)
    else:
        preset_name = args.preset or ds.preset
        if preset_name not in PRESETS:
            preset_name = "moco"
        preset = dict(PRESETS[preset_name])
        for key in ("epochs", "lr"):
            if getattr(args, key) is not None:
                changes.append(f"{key} {preset[key]} -> {getattr(args, key)}")
                preset[key] = getattr(args, key)
        if args.fast:
            tf, ty, classes = extract_features(model, train_dir, args.size, args.batch_size, args.workers, args.device, cache, "train features")
            vf, vy, _ = extract_features(model, val_dir, args.size, args.batch_size, args.workers, args.device, cache, "val features")
            res = linear_on_features(tf, ty, vf, vy, len(classes), seed=args.seed)
            changes.append("fast probe on cached centre-crop features (no augmentation, standardised features, cosine lr)")
        else:
            classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
            res = train_linear(model, train_dir, val_dir, len(classes), preset, args.size, args.workers, args.device, args.seed)
        protocol = "demo" if preset_name == "demo" or ds.key == "demo" else ("non-standard" if changes else preset["label"])
        metrics = dict(run_record(task, args.weights, args.seed, protocol, changes, preset=preset_name, preset_values=preset, **stage,
                                  protocol_name=preset["name"] + ("" if args.fast else "; top1/top5: final epoch (best: `best`)")),
                       dataset=ds.title, **res, classes=classes, load_report=report)
    write_json(out / "metrics.json", metrics)
    print(f"[{task}] {ds.title}: top-1 {metrics['top1']:.2f}  top-5 {metrics['top5']:.2f}  -> {out / 'metrics.json'}")
    return 0
