#!/usr/bin/env bash
# `make demo`: the whole pipeline on the generated demo world, on a CPU, in about 15 minutes.
#   1. generate the demo world (ImageFolder, VOC, COCO, Cityscapes layouts)
#   2. pretrain SimSiam (the authors' baseline) and SimSiam + the method (ResNet-18, 64 px, short schedule)
#   3. convert both checkpoints for detectron2 (tools/convert_to_d2.py) and extract them for mmseg
#   4. benchmark suite: voc_det, coco_instseg, voc_seg, linear_cls, knn -> report.md, CSV, LaTeX, figures
# Tasks whose engine is not installed are reported as skipped, with the reason, in report.md.
# Usage: tools/demo.sh [DEMO_DATA] [DEMO_OUT]; rerunning skips finished stages and cells.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-demo_data}
OUT=${2:-demo_out}
PY=${PY:-.venv/bin/python}
T0=$SECONDS
stage() { printf '\n== %s  [%dm%02ds]\n' "$1" $(((SECONDS - T0) / 60)) $(((SECONDS - T0) % 60)); }

stage "1/4 demo world -> $DATA"
if [[ -f $DATA/world.json ]]; then
  echo "   exists (run 'make clean-demo' to regenerate)"
else
  "$PY" tools/make_demo_data.py "$DATA"
fi

stage "2/4 pretraining (demo protocol: ResNet-18, 64 px, CPU)"
declare -A NAME=([simsiam]="SimSiam" [simsiam-hier]="SimSiam + hier. aug. invariance")
for m in simsiam simsiam-hier; do
  cfg=configs/pretrain/${m}_resnet18_1xb64-coslr-4e_demo.yaml
  if [[ -f $OUT/pretrain/$m/pretrain_summary.json ]]; then
    echo "   ${NAME[$m]}: finished ($OUT/pretrain/$m/last.pth)"
  else
    "$PY" -m pretrain.train "$cfg" data.train="$DATA/imagefolder/train" train.output="$OUT/pretrain/$m"
  fi
done

stage "3/4 conversion: detectron2 .pkl and torchvision backbone .pth"
for m in simsiam simsiam-hier; do
  "$PY" tools/convert_to_d2.py "$OUT/pretrain/$m/last.pth" "$OUT/converted/$m.pkl"
  "$PY" tools/extract_backbone.py "$OUT/pretrain/$m/last.pth" "$OUT/converted/$m-backbone.pth" --prefix backbone.
done

stage "4/4 transfer benchmark (demo protocols)"
mkdir -p "$OUT"
cat > "$OUT/suite.yaml" <<YAML
# Written by tools/demo.sh: the demo's benchmark suite (python -m benchmarks.run $OUT/suite.yaml)
name: demo
output: $OUT/benchmark
seeds: [0]
baseline: SimSiam
checkpoints:
  - {name: SimSiam, path: $OUT/pretrain/simsiam/last.pth, method: SimSiam, epochs: 4, data: demo world}
  - {name: SimSiam + method, path: $OUT/pretrain/simsiam-hier/last.pth, method: SimSiam-hier, epochs: 4, data: demo world}
tasks:
  voc_det: [--config, demo_voc_R_18_FPN, --data-root, $DATA]
  coco_instseg: [--config, demo_coco_R_18_FPN, --data-root, $DATA]
  voc_seg: [--config, demo_fcn_r18-d8_voc-192, --data-root, $DATA/VOC2012]
  linear_cls: [--data, $DATA/imagefolder, --dataset, demo, --size, "64", --workers, "0", --epochs, "10"]
  knn: [--data, $DATA/imagefolder, --dataset, demo, --size, "64", --workers, "0"]
YAML
status=0
"$PY" -m benchmarks.run "$OUT/suite.yaml" || status=$?
stage "done"
echo "report:  $OUT/benchmark/report.md   (tables: results.csv, results.tex; figures: $OUT/benchmark/figures/)"
echo "cells:   $OUT/benchmark/cells/<checkpoint>/<task>/s0/{metrics.json,cell.log}"
exit $status
