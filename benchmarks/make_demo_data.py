#!/usr/bin/env python
"""Generate the seeded demo world in real dataset layouts (ImageFolder, VOC, COCO, Cityscapes).

Example:
    python tools/make_demo_data.py demo_data --seed 0
    DETECTRON2_DATASETS=demo_data  # the VOC2007/VOC2012/coco/cityscapes trees sit directly under it
"""
import argparse
import dataclasses
import sys
import time
from pathlib import Path

from benchmarks.demo_world import VOC_CLASSES, WorldSpec, generate
from benchmarks.demo_world.formats import WRITERS, Counts
from benchmarks.demo_world.quirks import add_quirks
from pretrain.runs.cli import number


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", type=Path, help="root folder to write (must be empty unless --overwrite)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="same seed -> byte-identical files")
    p.add_argument("--num-classes", type=number(int, 2, len(VOC_CLASSES)), default=WorldSpec.num_classes,
                   help="object types (first N VOC class names)")
    p.add_argument("--cls-size", type=number(int, 16, 1024), default=WorldSpec.cls_size, help="ImageFolder image side in pixels")
    p.add_argument("--scene-size", type=number(int, 64, 256), default=WorldSpec.scene_size,
                   help="detection/segmentation image side (64..256)")
    p.add_argument("--scale", type=number(float, 0, 100, low_open=True), default=1.0, help="multiply every image count by this factor")
    p.add_argument("--parts", nargs="+", default=list(WRITERS), choices=list(WRITERS), help="which layouts to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo world (a folder holding world.json)")
    p.add_argument("--quirks", action="store_true", help="add the quirks real datasets have (image modes, split class sets, "
                   "stray files, degenerate boxes, colour masks, COCO crowd regions, ...; listed in OUT/quirks.json, see "
                   "benchmarks/demo_world/quirks.py)")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    spec = WorldSpec(num_classes=args.num_classes, seed=args.seed, cls_size=args.cls_size, scene_size=args.scene_size)
    counts = Counts(**{f.name: max(1, round(f.default * args.scale)) for f in dataclasses.fields(Counts)})
    t0 = time.time()
    try:
        summary = generate(args.output, spec, counts, tuple(args.parts), overwrite=args.overwrite)
        if args.quirks:
            quirks = add_quirks(args.output)
            print(f"added {len(quirks)} quirks ({', '.join(q['name'] for q in quirks)}); see {args.output / 'quirks.json'}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C); the folder is incomplete: rerun with --overwrite", file=sys.stderr)
        return 130
    total = sum(summary["images"].values())
    print(f"wrote {total} images ({', '.join(f'{k}: {v}' for k, v in summary['images'].items())}) "
          f"to {args.output} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
