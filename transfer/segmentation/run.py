"""`run_transfer.py --task voc_seg|cityscapes_seg`: fine-tune an FCN on MMSegmentation, write metrics.json.

The backbone comes from any checkpoint the converter reads (raw pretraining checkpoint, extracted
backbone, torchvision state_dict): it is written as `<output>/backbone.pth` (torchvision keys under
`backbone.`) and loaded through `init_cfg` with that prefix; a hook then proves every backbone tensor
equals the file. Runs resume from the run folder's last checkpoint; the result file is metrics.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..common import finite_or_none, run_record, write_json
from ..convert import write_torchvision_pth
from ..datacheck import require_files
from ..weights import CheckpointError, extract_backbone
from .protocol import adapt_to_run, check_input_format, datasets_of, protocol_changes, resolve_config, set_data_root

DEFAULT_CONFIG = {"voc_seg": "fcn_r50-d8_4xb4-20k_voc12aug-512x512", "cityscapes_seg": "fcn_r50-d8_4xb2-40k_cityscapes-769x769"}


def get_args_parser(task: str) -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(f"run_transfer.py --task {task}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="pretraining checkpoint, extracted backbone, torchvision state_dict, or 'random'")
    p.add_argument("--config", default=DEFAULT_CONFIG[task], help="preset name under configs/transfer/mmseg or a .py path")
    p.add_argument("--data-root", default=None, help="the dataset folder (VOC2012 with JPEGImages/SegmentationClass[Aug], "
                   "or cityscapes with leftImg8bit/gtFine); default: the config's data_root")
    p.add_argument("--output", type=Path, default=None, help="run folder (default work_dirs/transfer/<task>_<weights>_s<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    p.add_argument("--batch-size", type=int, default=None, help="total batch if the preset's does not fit (by default the "
                   "preset's total batch is kept, split over the processes); marked non-standard")
    p.add_argument("--batch-rule", choices=["linear", "accumulate"], default="linear",
                   help="how another total batch is compensated: linear scaling rule, or gradient accumulation")
    p.add_argument("--allow-input-mismatch", action="store_true", help="run even if the config's data preprocessor does "
                   "not feed torchvision-style input (RGB, ImageNet mean/std x 255); labelled non-standard")
    p.add_argument("--eval-only", action="store_true", help="evaluate the run's last checkpoint")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={}, metavar="KEY=VALUE", help="mmengine config overrides")
    return p


def _world_size(launcher: str) -> int:
    if launcher == "pytorch":
        return int(os.environ.get("WORLD_SIZE", 1))
    if launcher == "slurm":
        return int(os.environ.get("SLURM_NTASKS", 1))
    return 1


def main(task: str, argv: list[str]) -> int:
    from mmengine.config import Config

    args = get_args_parser(task).parse_args(argv)
    out = (args.output or Path("work_dirs/transfer") / f"{task}_{Path(args.weights).stem}_s{args.seed}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        path = resolve_config(args.config)
        preset = Config.fromfile(str(path))
        cfg = Config.fromfile(str(path))
        cfg.merge_from_dict(args.cfg_options)
        if args.data_root:
            set_data_root(cfg, args.data_root)
        if not args.eval_only:  # a first pass over the split files: every image and mask is there
            for root in {ds["data_root"] for ds in datasets_of(cfg)}:
                require_files(task, root)
        source = {"source": "random init", "layout": "random"}
        weights = None
        if args.weights != "random":
            ex = extract_backbone(args.weights)
            weights = str(out / "backbone.pth")
            write_torchvision_pth(ex, weights, prefix="backbone.")
            source = {"source": args.weights, "layout": ex.layout, "depth": ex.depth, "dropped": dict(ex.dropped)}
            print(f"[extract] {args.weights}: {ex.summary()} -> {weights}")
            if ex.depth != cfg.model.backbone.depth:
                raise CheckpointError(f"{args.weights} is a ResNet-{ex.depth} but {path.name} builds ResNet-{cfg.model.backbone.depth}; "
                                      f"pass --cfg-options model.backbone.depth={ex.depth} (and the head channels) or other weights")
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=weights, prefix="backbone.") if weights else None
        notes, equivalent = adapt_to_run(cfg, preset, _world_size(args.launcher), args.batch_size, args.batch_rule == "accumulate")
        cfg.merge_from_dict({k: v for k, v in args.cfg_options.items() if k != "train_dataloader.batch_size"})  # explicit wins
        if weights:
            notes += check_input_format(cfg, args.allow_input_mismatch)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    changes = notes + protocol_changes(preset, cfg, skip=notes + equivalent)
    kind = cfg.get("protocol", {}).get("kind", "standard")
    label = "demo" if kind == "demo" else ("non-standard" if changes else "standard")
    name = cfg.get("protocol", {}).get("name", path.stem)
    print(f"[{task}] {name} ({path.name}); protocol: {label}" + "".join(f"\n    change {c}" for c in changes)
          + "".join(f"\n    equivalent {c}" for c in equivalent))
    cfg.work_dir = str(out)
    cfg.launcher = args.launcher
    cfg.randomness = dict(seed=args.seed)
    cfg.resume = not args.no_resume and (out / "last_checkpoint").is_file()
    cfg.custom_hooks = [dict(type="BackboneLoadHook", weights=None if weights is None else str(Path(args.weights).resolve())),
                        dict(type="LastMetricsHook")]
    from .engine import run

    metrics, report, resumed = run(cfg, args.eval_only)
    if metrics is None:
        return 0  # not the main process
    if report is None and (out / "load_report.json").is_file():  # resumed or eval-only: the report of the run's start
        report = json.loads((out / "load_report.json").read_text())
    rec = dict(run_record(task, args.weights, args.seed, label, changes, protocol_name=name, config=str(path),
                          source=source, iterations=cfg.train_cfg.max_iters, eval_only=args.eval_only, resumed=resumed,
                          equivalent_changes=equivalent, total_batch=cfg.train_dataloader.batch_size * _world_size(args.launcher),
                          accumulation=cfg.optim_wrapper.get("accumulative_counts", 1)),
               **{k: finite_or_none(float(metrics[k])) for k in ("mIoU", "mAcc", "aAcc")},
               per_class_IoU={k[4:]: finite_or_none(float(v)) for k, v in metrics.items() if k.startswith("IoU.")}, load_report=report)
    write_json(out / "metrics.json", rec)
    print(f"[{task}] mIoU {rec['mIoU']:.2f}  mAcc {rec['mAcc']:.2f}  aAcc {rec['aAcc']:.2f}  -> {out / 'metrics.json'}")
    return 0
