"""`run_transfer.py --task voc_det|coco_det|coco_instseg`: fine-tune on detectron2 and write metrics.json.

A thin layer over detectron2's DefaultTrainer: the ExtraNorm C4 head, VOC/COCO evaluators, datasets
under a user-given root, safe and atomic checkpoints, a backbone load report, automatic resume from
the run folder, and an explicit protocol label ("standard", "non-standard" + changes, "demo").
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch.multiprocessing import ProcessExitedException

from pretrain.runs.cli import guarded, number
from pretrain.runs.files import write_json
from pretrain.runs.folder import git_commit
from pretrain.runs.preempt import EXIT_PREEMPTED, Preempted, Preemption

from ..common import check_output, request_identity, run_folder, start_state
from ..tasks import TASKS
from ..weights import CheckpointError
from .checkpoint import WeightsError, prepare_weights
from .protocol import (
    build_cfg,
    check_input_format,
    check_task,
    load_preset,
    protocol_changes,
    protocol_label,
    resolve_config,
    run_identity,
)


def get_args_parser(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(f"run_transfer.py --task {task}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="", help="converted .pkl, raw pretraining checkpoint / torchvision state_dict "
                   "(converted on the fly), 'random', or 'config' (the preset's MODEL.WEIGHTS, e.g. supervised MSRA)")
    p.add_argument("--config", default=TASKS[task].preset, help="preset name under configs/transfer/detectron2 or a YAML path")
    p.add_argument("--data-root", default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
                   help="folder holding VOC2007/, VOC2012/, coco/ (default $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--output", type=Path, default=None, help="run folder (default work_dirs/transfer/<task>_<weights>_s<seed>)")
    p.add_argument("--seed", type=number(int, 0), default=0)
    p.add_argument("--num-gpus", type=number(int, 1), default=1, help="processes per machine")
    p.add_argument("--num-machines", type=number(int, 1), default=1)
    p.add_argument("--machine-rank", type=number(int, 0), default=0)
    p.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 when --num-machines > 1")
    p.add_argument("--batch-size", type=number(int, 1), default=None,
                   help="total batch if the preset's does not fit: linear lr/iteration scaling, marked non-standard")
    p.add_argument("--allow-input-mismatch", action="store_true",
                   help="run even if the weights' input format (torchvision RGB / caffe2 BGR) differs from the preset's "
                        "(labelled non-standard)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--eval-only", action="store_true", help="evaluate the run's last checkpoint (in a folder without a "
                   "run: --weights as they are); says which checkpoint and iteration, and whether the run had finished")
    p.add_argument("--overwrite", action="store_true", help="start over in --output, deleting the run there (needed "
                   "when that run had other inputs)")
    p.add_argument("--no-resume", action="store_true", help="the same as --overwrite")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="detectron2 config overrides: KEY VALUE ...")
    return p


def main(task: str, argv: list[str]) -> int:
    return guarded(lambda: _main(task, argv), CheckpointError, WeightsError, resume_hint="rerun the same command to resume")


def _main(task: str, argv: list[str]) -> int:
    from detectron2.engine import launch

    started = time.time()
    from .datasets import dataset_box_report, require_dataset_files

    args = get_args_parser(task).parse_args(argv)
    args.opts = [o for o in args.opts if o != "--"]
    visible = torch.cuda.device_count()
    if args.num_gpus > 1 and args.num_gpus > visible:  # detectron2's DDP needs one GPU per process
        print(f"error: --num-gpus {args.num_gpus} starts {args.num_gpus} processes, one per GPU, but this machine has {visible} "
              f"visible GPU(s) (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --num-gpus "
              f"{max(1, visible)} (the preset's total batch is kept) or run where {args.num_gpus} GPUs are visible", file=sys.stderr)
        return 2
    out = (args.output or Path("work_dirs/transfer") / f"{task}_{Path(args.weights or 'random').stem}_s{args.seed}").resolve()
    if args.num_machines > 1 and args.dist_url == "auto":
        print("error: --dist-url tcp://HOST:PORT is required with --num-machines > 1", file=sys.stderr)
        return 2
    folder = run_folder(out, task)
    try:
        path = resolve_config(args.config)
        preset = load_preset(path)
        check_task(task, preset, path.stem)
        ident = run_identity(task, args, preset)
        weights = prepare_weights(args.weights, out)
        cfg, changes, equivalent = build_cfg(task, args, out, weights.value, preset)
        weights.check_depth(cfg)
        changes += check_input_format(cfg, weights.format, path.stem, args.allow_input_mismatch)
        overwrite = args.overwrite or args.no_resume
        if start_state(folder, ident, task, overwrite, args.eval_only, eval_weights=True) is None:
            return 0
        boxes = None
        if not args.eval_only:
            require_dataset_files(args.data_root, list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
            boxes = dataset_box_report(args.data_root, list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
            if boxes["dropped"] or boxes["clipped"]:
                print(f"[{task}] boxes: {boxes['dropped']} dropped (zero area or outside the image), {boxes['clipped']} clipped "
                      f"to the image, in {len(boxes['files'])} file(s), e.g. {next(iter(boxes['files']))} (recorded in "
                      f"metrics.json `boxes`; tools/check_data.py {args.data_root} --task {task} lists them)")
    except (CheckpointError, WeightsError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    changes = changes + protocol_changes(preset, cfg, skip=changes + equivalent)
    label = protocol_label(cfg, changes)
    print(f"[{task}] {cfg.HIERAUG.PROTOCOL_NAME or path.stem} ({path.name}); protocol: {label}"
          + "".join(f"\n    change {c}" for c in changes) + "".join(f"\n    equivalent {c}" for c in equivalent))
    cfg.freeze()
    check_output(out)
    if args.machine_rank == 0:
        folder.open(ident, {"processes": args.num_gpus * args.num_machines, "device": args.device, "git": git_commit()},
                    request=request_identity(task, argv), overwrite=overwrite, event="eval-only" if args.eval_only else None)
        weights.write()
    info = {"task": task, "weights": args.weights, "source": weights.source, "prepared": weights, "config": str(path),
            "protocol": label, "changes": changes, "equivalent_changes": equivalent, "eval_only": args.eval_only,
            "data_root": args.data_root, "started": started, "boxes": boxes}
    with Preemption() as preemption:  # a job's signal reaches this process too: it waits for its workers' checkpoint
        try:
            launch(worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                   dist_url=args.dist_url, args=(cfg, info))
        except ProcessExitedException as e:
            if e.exit_code != EXIT_PREEMPTED:
                raise
            raise Preempted(preemption.signum or signal.SIGTERM, f"the last checkpoint in {out}") from None
    if args.machine_rank == 0 and not (out / "metrics.json").is_file():  # only machine 0 writes results
        print(f"error: the run finished without {out / 'metrics.json'}; see {out / 'log.txt'}", file=sys.stderr)
        return 1
    return 0


def worker(cfg, info: dict) -> None:
    """One process of the run (detectron2's `launch` starts one per GPU)."""
    from detectron2.engine import default_setup
    from detectron2.utils import comm

    from . import heads  # noqa: F401  registers Res5ROIHeadsExtraNorm
    from .checkpoint import SafeCheckpointer, backbone_report, check_report
    from .datasets import register_root
    from .results import write_metrics
    from .trainer import Trainer

    SafeCheckpointer.use(info["prepared"])  # MODEL.WEIGHTS from the record read in _main, not from the file again
    classes = register_root(info["data_root"], list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST), cfg.HIERAUG.CLASSES_FROM_DATA)
    if cfg.HIERAUG.CLASSES_FROM_DATA and cfg.MODEL.ROI_HEADS.NUM_CLASSES != len(classes):
        cfg.defrost()
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(classes)
        cfg.freeze()
    default_setup(cfg, argparse.Namespace(config_file="", eval_only=info["eval_only"]))
    out = Path(cfg.OUTPUT_DIR)
    folder = run_folder(out, info["task"])
    if info["eval_only"]:
        model = Trainer.build_model(cfg)
        ckpt = Trainer.checkpointer_for(model, cfg)
        trained = ckpt.has_checkpoint()
        loaded = ckpt.resume_or_load(cfg.MODEL.WEIGHTS, resume=True)
        run = {"evaluated": ckpt.get_checkpoint_file() if trained else cfg.MODEL.WEIGHTS,
               "iteration": loaded.get("iteration", -1) + 1 if trained else 0, "max_iter": cfg.SOLVER.MAX_ITER,
               "finished": (folder.record() or {}).get("status") == "finished"}
        if comm.is_main_process():
            what = ("the finished run" if run["finished"] else
                    f"an UNFINISHED run (iteration {run['iteration']} of {run['max_iter']})" if trained else "--weights, not fine-tuned")
            print(f"[{info['task']}] --eval-only: evaluating {what}: {run['evaluated']}")
        results, report, resumed = Trainer.test(cfg, model), None, True
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=True)
        resumed = trainer.start_iter > 0
        report = None
        if not resumed and cfg.MODEL.WEIGHTS:
            report = backbone_report(trainer.model, trainer.checkpointer.incompatible, info["prepared"].arrays)
            if comm.is_main_process():
                write_json(out / "load_report.json", report)
            check_report(report, info["weights"])
        elif comm.is_main_process():
            print(f"[{info['task']}] resumed from {trainer.checkpointer.get_checkpoint_file()} at iteration {trainer.start_iter}"
                  if resumed else f"[{info['task']}] random initialisation (no weights loaded)")
        try:
            trainer.train()
        except Preempted as e:
            if comm.get_world_size() == 1:  # launch ran this in the entry point's process
                raise
            print(f"preempted: {e}", file=sys.stderr)
            sys.exit(EXIT_PREEMPTED)  # a worker process of launch: its exit code tells the parent
        results = getattr(trainer, "_last_eval_results", None) or {}
        run = {"iteration": cfg.SOLVER.MAX_ITER, "max_iter": cfg.SOLVER.MAX_ITER, "finished": True}
    if comm.is_main_process():
        write_metrics(cfg, info, results, report, classes, resumed, run)
        if not info["eval_only"]:
            folder.finish()
