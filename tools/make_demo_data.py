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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_world import WorldSpec, generate  # noqa: E402
from benchmarks.demo_world.formats import WRITERS, Counts  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", type=Path, help="root folder to write (must be empty unless --overwrite)")
    p.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    p.add_argument("--num-classes", type=int, default=WorldSpec.num_classes, help="object types (first N VOC class names)")
    p.add_argument("--cls-size", type=int, default=WorldSpec.cls_size, help="ImageFolder image side in pixels")
    p.add_argument("--scene-size", type=int, default=WorldSpec.scene_size, help="detection/segmentation image side (<= 256)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every image count by this factor")
    p.add_argument("--parts", nargs="+", default=list(WRITERS), choices=list(WRITERS), help="which layouts to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    spec = WorldSpec(num_classes=args.num_classes, seed=args.seed, cls_size=args.cls_size, scene_size=args.scene_size)
    counts = Counts(**{f.name: max(1, round(f.default * args.scale)) for f in dataclasses.fields(Counts)})
    t0 = time.time()
    try:
        summary = generate(args.output, spec, counts, tuple(args.parts), overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(summary["images"].values())
    print(f"wrote {total} images ({', '.join(f'{k}: {v}' for k, v in summary['images'].items())}) "
          f"to {args.output} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
