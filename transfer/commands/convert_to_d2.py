#!/usr/bin/env python
"""Convert a pretraining checkpoint into Detectron2 weights (`.pkl`) that provably load.

    python tools/convert_to_d2.py INPUT OUTPUT.pkl

INPUT may be this project's checkpoint (online backbone), a MoCo (`module.encoder_q.`),
SimSiam/BYOL-style (`module.encoder.`), `backbone.`-prefixed (mmselfsup, solo-learn, lightly)
checkpoint, the paper authors' released checkpoint, or a plain torchvision ResNet state_dict;
the layout is detected and reported. Heads, projectors, predictors, momentum encoders, queues,
intermediate-stage heads and augmentation embeddings are dropped and counted. The backbone must be a
complete ResNet-18/34/50/101 (every stem/res2..res5 tensor, right shapes, nothing left over), or
nothing is written and the exit code is 1.

The output is {"model": {name: numpy array}, "__author__": ..., "matching_heuristics": True}.
Load it in Detectron2 with (the configs in configs/transfer/detectron2/ already do):
    INPUT.FORMAT "RGB"; MODEL.PIXEL_MEAN [123.675, 116.28, 103.53]; MODEL.PIXEL_STD [58.395, 57.12, 57.375];
    MODEL.RESNETS.STRIDE_IN_1X1 False; MODEL.RESNETS.DEPTH <depth> (18/34: MODEL.RESNETS.RES2_OUT_CHANNELS 64).
"""
import argparse
import sys
from pathlib import Path

from pretrain.runs.cli import guarded
from transfer.convert import d2_name, write_detectron2_pkl
from transfer.weights import CheckpointError, extract_backbone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="pretraining checkpoint or torchvision state_dict")
    p.add_argument("output", type=Path, help="Detectron2 weights to write (.pkl)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every old -> new key")
    p.add_argument("--member", choices=["teacher", "student"], help="of a DINO checkpoint (teacher/student pair): "
                   "which network; the teacher by default (the one DINO evaluates)")
    args = p.parse_args(argv)
    if args.output.suffix != ".pkl":
        print(f"error: {args.output}: the output must end in .pkl (Detectron2 reads pickles by that suffix)", file=sys.stderr)
        return 2
    return guarded(lambda: _convert(args), CheckpointError)


def _convert(args) -> int:
    ex = extract_backbone(args.input, args.member)
    model = write_detectron2_pkl(ex, args.output)
    if args.verbose:
        for k in ex.state_dict:
            print(f"  {k} -> {d2_name(k)}")
    print(f"{args.input}: {ex.summary()}")
    print(f"wrote {args.output}: {len(model)} tensors mapped to Detectron2 names (ResNet-{ex.depth}, coverage complete)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
