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
import time
from pathlib import Path

from pretrain.distributed.launch import LaunchError, slurm_as_torchrun
from pretrain.runs.cli import guarded, number
from pretrain.runs.folder import git_commit

from ..common import check_output, finite_or_none, request_identity, run_folder, start_state, transfer_identity
from ..convert import write_torchvision_pth
from ..datacheck import require_files
from ..protocol import label as protocol_label
from ..result import write_result
from ..tasks import TASKS
from ..weights import CheckpointError, extract_backbone
from .protocol import (
    adapt_to_run,
    check_input_format,
    check_numbers,
    check_overrides,
    check_task,
    datasets_of,
    identity_config,
    protocol_changes,
    resolve_config,
    set_data_root,
)


def get_args_parser(task: str) -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(f"run_transfer.py --task {task}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="pretraining checkpoint, extracted backbone, torchvision state_dict, or 'random'")
    p.add_argument("--config", default=TASKS[task].preset, help="preset name under configs/transfer/mmseg or a .py path")
    p.add_argument("--data-root", default=None, help="the dataset folder (VOC2012 with JPEGImages/SegmentationClass[Aug], "
                   "or cityscapes with leftImg8bit/gtFine); default: the config's data_root")
    p.add_argument("--output", type=Path, default=None, help="run folder (default work_dirs/transfer/<task>_<weights>_s<seed>)")
    p.add_argument("--seed", type=number(int, 0), default=0)
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    p.add_argument("--batch-size", type=number(int, 1), default=None, help="total batch if the preset's does not fit (by default the "
                   "preset's total batch is kept, split over the processes); marked non-standard")
    p.add_argument("--batch-rule", choices=["linear", "accumulate"], default="linear",
                   help="how another total batch is compensated: linear scaling rule, or gradient accumulation")
    p.add_argument("--allow-input-mismatch", action="store_true", help="run even if the config's data preprocessor does "
                   "not feed torchvision-style input (RGB, ImageNet mean/std x 255); labelled non-standard")
    p.add_argument("--eval-only", action="store_true", help="evaluate the run's last checkpoint; says which checkpoint and "
                   "iteration, and whether the run had finished")
    p.add_argument("--overwrite", action="store_true", help="start over in --output, deleting the run there (needed "
                   "when that run had other inputs)")
    p.add_argument("--no-resume", action="store_true", help="the same as --overwrite")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={}, metavar="KEY=VALUE", help="mmengine config overrides")
    return p


def _launcher(name: str) -> str:
    """mmengine's launcher to use for `--launcher name`. Under srun, `slurm` becomes `pytorch` on SLURM's variables
    written as torchrun's (`pretrain.distributed.launch.slurm_as_torchrun`): mmengine's own slurm launcher selects GPU SLURM_LOCALID
    (invalid where a task sees one GPU, --gpus-per-task=1) and needs scontrol for the master address."""
    if name != "slurm":
        return name
    return "pytorch" if slurm_as_torchrun() else "none"


def _world_size(launcher: str) -> int:
    return int(os.environ.get("WORLD_SIZE", 1)) if launcher == "pytorch" else 1


def _rank(launcher: str) -> int:
    """This process's global rank before mmengine joins the process group (0 without a launcher)."""
    return int(os.environ.get("RANK", 0)) if launcher == "pytorch" else 0


def main(task: str, argv: list[str]) -> int:
    return guarded(lambda: _main(task, argv), CheckpointError, LaunchError)


def _main(task: str, argv: list[str]) -> int:
    from mmengine.config import Config

    started = time.time()
    args = get_args_parser(task).parse_args(argv)
    launched_with, args.launcher = args.launcher, _launcher(args.launcher)
    out = (args.output or Path("work_dirs/transfer") / f"{task}_{Path(args.weights).stem}_s{args.seed}").resolve()
    folder = run_folder(out, task)
    is_main = _rank(args.launcher) == 0
    try:
        path = resolve_config(args.config)
        preset = Config.fromfile(str(path))
        check_task(task, preset, path.stem)
        check_overrides(preset, args.cfg_options)
        cfg = Config.fromfile(str(path))
        cfg.merge_from_dict(args.cfg_options)
        if args.data_root:
            set_data_root(cfg, args.data_root)
        roots = sorted({ds["data_root"] for ds in datasets_of(cfg)})
        ident = transfer_identity(task, args.weights, args.seed, roots[0] if len(roots) == 1 else None, data_roots=roots,
                                  config=identity_config(cfg), batch_size=args.batch_size, batch_rule=args.batch_rule,
                                  allow_input_mismatch=args.allow_input_mismatch)
        if not args.eval_only:  # a first pass over the split files: every image and mask is there
            for root in roots:
                require_files(task, root)
        source = {"source": "random init", "layout": "random"}
        weights, ex = None, None
        if args.weights != "random":
            ex = extract_backbone(args.weights)
            weights = str(out / "backbone.pth")
            source = {"source": args.weights, "layout": ex.layout, "depth": ex.depth, "dropped": dict(ex.dropped)}
            if ex.depth != cfg.model.backbone.depth:
                raise CheckpointError(f"{args.weights} is a ResNet-{ex.depth} but {path.name} builds ResNet-{cfg.model.backbone.depth}; "
                                      f"pass --cfg-options model.backbone.depth={ex.depth} (and the head channels) or other weights")
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=weights, prefix="backbone.") if weights else None
        notes, equivalent = adapt_to_run(cfg, preset, _world_size(args.launcher), args.batch_size, args.batch_rule == "accumulate")
        cfg.merge_from_dict({k: v for k, v in args.cfg_options.items() if k != "train_dataloader.batch_size"})  # explicit wins
        check_numbers(cfg)
        if weights:
            notes += check_input_format(cfg, args.allow_input_mismatch)
        overwrite = args.overwrite or args.no_resume
        if start_state(folder, ident, task, overwrite, args.eval_only, speak=is_main) is None:
            return 0
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    changes = notes + protocol_changes(preset, cfg, skip=notes + equivalent)
    kind = cfg.get("protocol", {}).get("kind", "standard")
    label = protocol_label(kind, changes)
    name = cfg.get("protocol", {}).get("name", path.stem)
    print(f"[{task}] {name} ({path.name}); protocol: {label}" + "".join(f"\n    change {c}" for c in changes)
          + "".join(f"\n    equivalent {c}" for c in equivalent))
    if is_main:  # the other ranks wait for it in mmengine's process-group set-up, before the weights are loaded
        check_output(out)
        folder.open(ident, {"processes": _world_size(args.launcher), "launcher": launched_with, "git": git_commit()},
                    request=request_identity(task, argv), overwrite=overwrite, event="eval-only" if args.eval_only else None)
        if ex is not None:
            write_torchvision_pth(ex, weights, prefix="backbone.")
            print(f"[extract] {args.weights}: {ex.summary()} -> {weights}")
    cfg.work_dir = str(out)
    cfg.launcher = args.launcher
    cfg.randomness = dict(seed=args.seed)
    cfg.resume = (out / "last_checkpoint").is_file()
    cfg.custom_hooks = [dict(type="BackboneLoadHook", weights=None if weights is None else str(Path(args.weights).resolve())),
                        dict(type="LastMetricsHook"), dict(type="PreemptionHook")]
    from .engine import run

    metrics, report, resumed, evaluated = run(cfg, args.eval_only)
    if metrics is None:
        return 0  # not the main process
    if report is None and (out / "load_report.json").is_file():  # resumed or eval-only: the report of the run's start
        report = json.loads((out / "load_report.json").read_text())
    finished = not args.eval_only or (folder.record() or {}).get("status") == "finished"
    run_info = {"iteration": evaluated["iteration"] if args.eval_only else cfg.train_cfg.max_iters,
                "max_iter": cfg.train_cfg.max_iters, "finished": finished, **({"evaluated": evaluated["checkpoint"]} if args.eval_only else {})}
    if args.eval_only:
        what = "the finished run" if finished else f"an UNFINISHED run (iteration {run_info['iteration']} of {run_info['max_iter']})"
        print(f"[{task}] --eval-only: evaluated {what}: {evaluated['checkpoint']}")
    values = {k: finite_or_none(float(metrics[k])) for k in ("mIoU", "mAcc", "aAcc")}
    write_result(out, task, weights=args.weights, seed=args.seed, protocol=label, changes=changes, protocol_name=name,
                 metrics=values, load_report=report, started=started, config=str(path), source=source,
                 iterations=cfg.train_cfg.max_iters, eval_only=args.eval_only, resumed=resumed, equivalent_changes=equivalent,
                 total_batch=cfg.train_dataloader.batch_size * _world_size(args.launcher),
                 accumulation=cfg.optim_wrapper.get("accumulative_counts", 1), run=run_info,
                 per_class_IoU={k[4:]: finite_or_none(float(v)) for k, v in metrics.items() if k.startswith("IoU.")})
    if not args.eval_only:
        folder.finish()
    print(f"[{task}] mIoU {values['mIoU']:.2f}  mAcc {values['mAcc']:.2f}  aAcc {values['aAcc']:.2f}  -> {out / 'metrics.json'}")
    return 0
