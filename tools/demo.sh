#!/usr/bin/env bash
# `make demo`: every stage of the pipeline that exists so far, on the generated demo world.
#   1. generate the demo world (ImageFolder, VOC, COCO, Cityscapes layouts)
#   2. pretrain SimSiam (the authors' baseline) and SimSiam + the method for a short schedule
# Usage: tools/demo.sh [DEMO_DATA] [DEMO_OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-demo_data}
OUT=${2:-demo_out}
PY=${PY:-.venv/bin/python}

echo "== 1/2 demo world -> $DATA"
if [[ -f $DATA/world.json ]]; then
  echo "   exists (remove it or run 'make clean-demo' to regenerate)"
else
  "$PY" tools/make_demo_data.py "$DATA"
fi

echo "== 2/2 pretraining (demo protocol: ResNet-18, 64 px, CPU)"
for cfg in simsiam_resnet18_1xb64-coslr-4e_demo simsiam-hier_resnet18_1xb64-coslr-4e_demo; do
  "$PY" -m pretrain.train "configs/pretrain/$cfg.yaml" data.train="$DATA/imagefolder/train" train.output="$OUT/pretrain/$cfg"
done
echo "demo finished: checkpoints and logs under $OUT/pretrain/"
