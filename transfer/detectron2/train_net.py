"""`run_transfer.py --task voc_det|coco_det|coco_instseg`: fine-tune on detectron2 and write metrics.json.

A thin layer over detectron2's DefaultTrainer: the ExtraNorm C4 head, VOC/COCO evaluators, datasets
under a user-given root, safe and atomic checkpoints, a backbone load report, automatic resume from
the run folder, and an explicit protocol label ("standard", "non-standard" + changes, "demo").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from ..common import finite_or_none, run_record, write_json
from ..convert import write_detectron2_pkl
from ..weights import CheckpointError, extract_backbone
from .protocol import DEFAULT_CONFIG, adapt_to_run, check_input_format, load_preset, protocol_changes, protocol_label, resolve_config

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
NEEDED = {"voc_det": ("bbox",), "coco_det": ("bbox",), "coco_instseg": ("bbox", "segm")}


def get_args_parser(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(f"run_transfer.py --task {task}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="", help="converted .pkl, raw pretraining checkpoint / torchvision state_dict "
                   "(converted on the fly), 'random', or 'config' (the preset's MODEL.WEIGHTS, e.g. supervised MSRA)")
    p.add_argument("--config", default=DEFAULT_CONFIG[task], help="preset name under configs/transfer/detectron2 or a YAML path")
    p.add_argument("--data-root", default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
                   help="folder holding VOC2007/, VOC2012/, coco/ (default $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--output", type=Path, default=None, help="run folder (default work_dirs/transfer/<task>_<weights>_s<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 when --num-machines > 1")
    p.add_argument("--batch-size", type=int, default=None,
                   help="total batch if the preset's does not fit: linear lr/iteration scaling, marked non-standard")
    p.add_argument("--allow-input-mismatch", action="store_true",
                   help="run even if the weights' input format (torchvision RGB / caffe2 BGR) differs from the preset's "
                        "(labelled non-standard)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--eval-only", action="store_true", help="evaluate the run's last checkpoint (or --weights)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="detectron2 config overrides: KEY VALUE ...")
    return p


def prepare_weights(weights: str, out: Path) -> tuple[str, dict]:
    """(MODEL.WEIGHTS value, source description). Raw checkpoints are converted to out/weights_d2.pkl."""
    if weights in ("", "random"):
        return "", {"source": "random init", "layout": "random"}
    if weights == "config":
        return None, {"source": "the preset's MODEL.WEIGHTS", "layout": "preset"}
    if weights.endswith(".pkl") or weights.startswith("detectron2://"):
        return weights, {"source": weights, "layout": "detectron2 .pkl"}
    ex = extract_backbone(weights)
    target = out / "weights_d2.pkl"
    write_detectron2_pkl(ex, target)
    print(f"[convert] {weights}: {ex.summary()} -> {target}")
    return str(target), {"source": weights, "layout": ex.layout, "depth": ex.depth, "dropped": dict(ex.dropped),
                         "converted": str(target)}


def weights_format(weights: str, source: dict) -> str | None:
    """'torchvision' (RGB-trained, converted from a torchvision-style ResNet), 'caffe2' (MSRA's BGR
    weights), or None (random init, the preset's own weights, unknown)."""
    from .checkpoint import load_pkl

    if source["layout"] in ("random", "preset"):
        return None
    if source["layout"] != "detectron2 .pkl":
        return "torchvision"  # extracted from a pretraining checkpoint or a torchvision state_dict
    if weights.startswith("detectron2://ImageNetPretrained/MSRA"):
        return "caffe2"
    if not Path(weights).is_file():
        return None
    data = load_pkl(weights)
    if str(data.get("__author__", "")).startswith(("hier-aug", "MOCO")):
        return "torchvision"
    names = data.get("model", data.get("blobs", data))
    return "caffe2" if isinstance(names, dict) and any(str(k).endswith("_branch2a_w") for k in names) else None


def _check_depth(cfg, weights: str) -> None:
    from .checkpoint import WeightsError, load_pkl

    if not weights.endswith(".pkl") or not Path(weights).is_file():
        return
    depth = load_pkl(weights).get("depth")
    if depth and depth != cfg.MODEL.RESNETS.DEPTH:
        extra = " MODEL.RESNETS.RES2_OUT_CHANNELS 64" if depth in (18, 34) else ""
        raise WeightsError(f"{weights} is a ResNet-{depth} but the config builds ResNet-{cfg.MODEL.RESNETS.DEPTH}: "
                           f"pass MODEL.RESNETS.DEPTH {depth}{extra} (C4 heads need depth >= 50) or other weights")


def build_cfg(task: str, args, out: Path, weights: str | None):
    """(preset, resolved cfg, path, protocol changes, equivalent changes): preset + overrides + hardware
    adaptation; explicit overrides other than the batch win over the scaling rule."""
    path = resolve_config(args.config)
    preset = load_preset(path)
    cfg = preset.clone()
    cfg.merge_from_list(args.opts)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    cfg.OUTPUT_DIR = str(out)
    cfg.SEED = args.seed
    cfg.MODEL.DEVICE = args.device
    if task in ("coco_det", "voc_det"):
        cfg.MODEL.MASK_ON = cfg.MODEL.MASK_ON and task != "voc_det"
    changes, equivalent = adapt_to_run(cfg, preset, args.num_gpus * args.num_machines, args.batch_size)
    explicit = [x for k, v in zip(args.opts[::2], args.opts[1::2]) if k != "SOLVER.IMS_PER_BATCH" for x in (k, v)]
    cfg.merge_from_list(explicit)
    return preset, cfg, path, changes, equivalent


def main(task: str, argv: list[str]) -> int:
    from detectron2.engine import launch

    from .checkpoint import WeightsError
    from .datasets import require_dataset_files

    args = get_args_parser(task).parse_args(argv)
    args.opts = [o for o in args.opts if o != "--"]
    out = args.output or Path("work_dirs/transfer") / f"{task}_{Path(args.weights or 'random').stem}_s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        weights, source = prepare_weights(args.weights, out)
        preset, cfg, path, changes, equivalent = build_cfg(task, args, out, weights)
        _check_depth(cfg, cfg.MODEL.WEIGHTS)
        changes += check_input_format(cfg, weights_format(cfg.MODEL.WEIGHTS or "", source), path.stem,
                                      args.allow_input_mismatch)
        if not args.eval_only:
            require_dataset_files(args.data_root, list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    except (CheckpointError, WeightsError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    changes = changes + protocol_changes(preset, cfg, skip=changes + equivalent)
    label = protocol_label(cfg, changes)
    print(f"[{task}] {cfg.HIERAUG.PROTOCOL_NAME or path.stem} ({path.name}); protocol: {label}"
          + "".join(f"\n    change {c}" for c in changes) + "".join(f"\n    equivalent {c}" for c in equivalent))
    cfg.freeze()
    dist_url = args.dist_url
    if dist_url == "auto" and args.num_machines > 1:
        print("error: --dist-url tcp://HOST:PORT is required with --num-machines > 1", file=sys.stderr)
        return 2
    info = {"task": task, "weights": args.weights, "source": source, "config": str(path), "protocol": label,
            "changes": changes, "equivalent_changes": equivalent, "eval_only": args.eval_only, "resume": not args.no_resume, "data_root": args.data_root}
    launch(worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=dist_url,
           args=(cfg, info))
    if not (out / "metrics.json").is_file():
        print(f"error: the run finished without {out / 'metrics.json'}; see {out / 'log.txt'}", file=sys.stderr)
        return 1
    return 0


def worker(cfg, info: dict) -> None:
    """One process of the run (detectron2's `launch` starts one per GPU)."""
    from detectron2.engine import default_setup
    from detectron2.utils import comm

    from . import heads  # noqa: F401  registers Res5ROIHeadsExtraNorm
    from .checkpoint import backbone_report, check_report, load_pkl
    from .datasets import register_root
    from .trainer import Trainer

    classes = register_root(info["data_root"], list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST), cfg.HIERAUG.CLASSES_FROM_DATA)
    if cfg.HIERAUG.CLASSES_FROM_DATA and cfg.MODEL.ROI_HEADS.NUM_CLASSES != len(classes):
        cfg.defrost()
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(classes)
        cfg.freeze()
    default_setup(cfg, argparse.Namespace(config_file="", eval_only=info["eval_only"]))
    out = Path(cfg.OUTPUT_DIR)
    source = None  # our converted arrays: the load report then compares every value
    if cfg.MODEL.WEIGHTS.endswith(".pkl") and Path(cfg.MODEL.WEIGHTS).is_file():
        data = load_pkl(cfg.MODEL.WEIGHTS)
        source = data["model"] if str(data.get("__author__", "")).startswith("hier-aug") else None
    if info["eval_only"]:
        model = Trainer.build_model(cfg)
        ckpt = Trainer.checkpointer_for(model, cfg)
        ckpt.resume_or_load(cfg.MODEL.WEIGHTS, resume=True)
        results, report, resumed = Trainer.test(cfg, model), None, True
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=info["resume"])
        resumed = trainer.start_iter > 0
        report = None
        if not resumed and cfg.MODEL.WEIGHTS:
            report = backbone_report(trainer.model, trainer.checkpointer.incompatible, source)
            if comm.is_main_process():
                write_json(out / "load_report.json", report)
            check_report(report, info["weights"])
        elif comm.is_main_process():
            print(f"[{info['task']}] resumed from {trainer.checkpointer.get_checkpoint_file()} at iteration {trainer.start_iter}"
                  if resumed else f"[{info['task']}] random initialisation (no weights loaded)")
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None) or {}
    if comm.is_main_process():
        write_metrics(cfg, info, results, report, classes, resumed)


def write_metrics(cfg, info: dict, results: dict, report: dict | None, classes: list[str], resumed: bool) -> None:
    """metrics.json: the run record, `bbox` (and `segm`) summary APs, per-class APs, the load report.
    VOC runs also carry AP / AP50 / AP75 at the top level."""
    task = info["task"]
    out = Path(cfg.OUTPUT_DIR)
    if report is None and (out / "load_report.json").is_file():
        report = json.loads((out / "load_report.json").read_text())
    missing = [k for k in NEEDED[task] if k not in results]
    if missing:
        raise RuntimeError(f"evaluation returned no {missing} results (got {list(results)})")
    summary = {kind: {k: finite_or_none(float(v)) for k, v in r.items() if k in SUMMARY_KEYS} for kind, r in results.items()}
    per_class = {kind: {k[3:]: finite_or_none(float(v)) for k, v in r.items() if k.startswith("AP-")} for kind, r in results.items()}
    metrics = dict(run_record(task, info["weights"], cfg.SEED, info["protocol"], info["changes"],
                              protocol_name=cfg.HIERAUG.PROTOCOL_NAME, config=info["config"],
                              source=info["source"], iterations=cfg.SOLVER.MAX_ITER, batch_size=cfg.SOLVER.IMS_PER_BATCH,
                              eval_only=info["eval_only"], resumed=resumed, equivalent_changes=info["equivalent_changes"]),
                   **(summary["bbox"] if task == "voc_det" else {}), **summary, per_class_AP=per_class, classes=classes,
                   load_report=report)
    write_json(out / "metrics.json", metrics)
    line = "  ".join(f"{kind} " + " ".join(f"{k} {v:.2f}" for k, v in list(s.items())[:3] if v is not None) for kind, s in summary.items())
    print(f"[{task}] {line}  -> {out / 'metrics.json'}")
