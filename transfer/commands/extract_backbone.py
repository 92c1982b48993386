#!/usr/bin/env python
"""Extract the backbone of a pretraining checkpoint as a torchvision-layout ResNet state_dict (.pth).

    python tools/extract_backbone.py INPUT OUTPUT.pth [--prefix backbone.]

Same inputs and checks as tools/convert_to_d2.py. The output holds {"state_dict": ..., "meta": ...};
`--prefix backbone.` writes mmseg/mmdet-style keys (then load with init_cfg=dict(type='Pretrained',
checkpoint=OUTPUT, prefix='backbone.')). Without a prefix the file loads into torchvision's
resnetXX() with strict=False, missing only fc.*.
"""
import argparse
import sys
from pathlib import Path

from pretrain.runs.cli import guarded
from transfer.convert import write_torchvision_pth
from transfer.weights import CheckpointError, extract_backbone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--prefix", default="", help="prefix for every key, e.g. 'backbone.'")
    p.add_argument("--member", choices=["teacher", "student"], help="of a DINO checkpoint (teacher/student pair): "
                   "which network; the teacher by default (the one DINO evaluates)")
    args = p.parse_args(argv)
    return guarded(lambda: _extract(args), CheckpointError)


def _extract(args) -> int:
    ex = extract_backbone(args.input, args.member)
    write_torchvision_pth(ex, args.output, args.prefix)
    print(f"{args.input}: {ex.summary()}")
    print(f"wrote {args.output}: ResNet-{ex.depth} backbone, {len(ex.state_dict)} tensors, key prefix {args.prefix!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
