#!/usr/bin/env python
"""Check a dataset before a run: decode every image/mask in parallel and report what a run would refuse
(errors: unreadable images, dangling symlinks, empty class folders, missing annotation/mask files, masks of
the wrong size, mode or labels, val classes that train lacks, boxes far outside their image) and what a run
changes or skips (warnings: images converted to 8-bit RGB, files whose content is another format than their
name, stray non-image files, train classes absent from val, zero-area or clipped boxes, COCO crowd regions
and images without annotations). Exit 0 without errors, 1 with any (the list is printed, and written as
JSON with --json).

    tools/check_data.py /datasets/imagenet/train                    # pretraining ImageFolder
    tools/check_data.py /datasets --task voc_det                    # the folder holding VOC2007, VOC2012
    tools/check_data.py /datasets --task coco_instseg               # the folder holding coco/
    tools/check_data.py /datasets/VOC2012 --task voc_seg
    tools/check_data.py /datasets/cityscapes --task cityscapes_seg
"""
import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from pretrain.runs.cli import guarded, number
from pretrain.runs.files import write_json
from transfer.datacheck import TASKS, check, items


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--task", choices=TASKS, default="pretrain")
    p.add_argument("--workers", type=number(int, 1), default=min(16, os.cpu_count() or 1))
    p.add_argument("--json", type=Path, default=None, help="also write the faults here")
    args = p.parse_args(argv)
    return guarded(lambda: _check(args), resume_hint="nothing was written")


def _check(args) -> int:
    try:
        samples, faults = items(args.task, args.root)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not samples and not faults:
        print(f"error: no {args.task} samples found under {args.root}; is it the folder the task expects? (see --help)",
              file=sys.stderr)
        return 1
    faults += check(samples, decode=True, workers=args.workers)
    if args.json:
        write_json(args.json, {"root": str(args.root), "task": args.task, "samples": len(samples), "faults": faults})
    errors = [f for f in faults if f["severity"] == "error"]
    warnings = [f for f in faults if f["severity"] != "error"]
    for f in errors + warnings:
        print(f"{f['severity']}: {f['split']}: {f['file']}: {f['problem']}")
    kinds = Counter(f["problem"].split(" (")[0].split(":")[0] for f in errors)
    print(f"{len(samples)} samples checked, {len(errors)} problems" + (f" ({dict(kinds)})" if errors else "")
          + f", {len(warnings)} warnings" + (" (the runs change or skip these; listed above)" if warnings else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
