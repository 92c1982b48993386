"""Pretraining entry point: `python -m pretrain.train CONFIG [KEY=VALUE ...]` (torchrun/SLURM aware).

Examples:
    python -m pretrain.train configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml
    torchrun --nproc_per_node 8 -m pretrain.train configs/pretrain/simsiam-hier_resnet50_8xb32-coslr-200e_in100.yaml \\
        data.train=/datasets/imagenet/train data.class_list=configs/pretrain/in100_classes.txt
A run resumes automatically from <train.output>/last.pth when its inputs are the same (run.json); a
folder holding a run with other inputs is refused (another train.output, or --overwrite).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pretrain.config.config import ConfigError, load_config
from pretrain.distributed.launch import LaunchError, init_distributed
from pretrain.runs.cli import guarded


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("pretrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config (configs/pretrain/*.yaml)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. optim.epochs=100 train.output=runs/x")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--overwrite", action="store_true", help="start over in train.output, deleting the run there "
                   "(needed when that run had other inputs)")
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
    return guarded(lambda: _train(cfg, args.overwrite), LaunchError)


def _train(cfg: dict, overwrite: bool) -> int:
    from pretrain.engine.runtime import device_type

    info = init_distributed(device_type(cfg))
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from pretrain.engine.outputs import open_run, output_dir
    from pretrain.engine.trainer import Pretrainer

    if open_run(cfg, info, overwrite) == "finished":
        if info.is_main:
            print(f"{output_dir(cfg)}: already finished with these inputs ({output_dir(cfg) / 'pretrain_summary.json'}); "
                  "nothing to do (--overwrite to run it again)")
        return 0
    summary = Pretrainer(cfg, info).run()
    if info.is_main:
        print(json.dumps({k: summary[k] for k in ("method", "steps", "loss_first", "loss_last", "checkpoint")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
