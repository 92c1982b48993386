"""Pretraining entry point: `python -m pretrain.train CONFIG [KEY=VALUE ...]` (torchrun/SLURM aware).

Examples:
    python -m pretrain.train configs/pretrain/simsiam-hier_resnet18_1xb32-coslr-3e_demo.yaml
    torchrun --nproc_per_node 8 -m pretrain.train configs/pretrain/simsiam-hier_resnet50_8xb32-coslr-200e_in100.yaml \\
        data.train=/datasets/imagenet/train data.class_list=configs/pretrain/in100_classes.txt
A run resumes automatically from <train.output>/last.pth.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import ConfigError, load_config
from .dist import init_distributed


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("pretrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config (configs/pretrain/*.yaml)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. optim.epochs=100 train.output=runs/x")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg, indent=2))
        return 0
    info = init_distributed()
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from .engine import Pretrainer

    summary = Pretrainer(cfg, info).run()
    if info.is_main:
        print(json.dumps({k: summary[k] for k in ("method", "steps", "loss_first", "loss_last", "checkpoint")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
