#!/usr/bin/env bash
# Create .venv with the pinned, tested stack (`make setup` runs this; it is idempotent).
#
# Steps: venv -> torch/torchvision -> mmcv 2.1.0 with compiled ops (built once from its sdist,
# patched for torch 2.14's C++20 headers, cached as a wheel) -> mmengine/mmseg -> this package.
# A second run whose inputs did not change only checks the stamp and detectron2 (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
CACHE=${HA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hier-aug}
CONSTRAINTS=$ROOT/requirements/constraints.txt
STAMP=$VENV/.setup-stamp

step() { printf '\n[setup] %s\n' "$*"; }
fail() { printf '\n[setup] FAILED at step: %s\n[setup] %s\n' "$1" "$2" >&2; exit 1; }

inputs_hash() { cat "$CONSTRAINTS" setup.py tools/setup_env.sh | sha256sum | cut -c1-16; }

report_detectron2() {
  if "$VENV/bin/python" -c 'import detectron2' 2>/dev/null; then
    step "detectron2 $("$VENV/bin/python" -c 'import detectron2; print(detectron2.__version__)') found: detection transfer enabled"
  else
    step "detectron2 not installed: detection transfer (voc_det, coco_det, coco_instseg) will be skipped."
    echo "         Install it by its official instructions (https://detectron2.readthedocs.io/en/latest/tutorials/install.html),"
    echo "         from source at the commit named in README.md, into this venv:"
    echo "           .venv/bin/pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'"
    echo "         Release v0.6 is not supported (its VOC evaluator breaks on NumPy >= 1.24)."
  fi
}

if [[ -f $STAMP && "$(cat "$STAMP")" == "$(inputs_hash)" ]]; then
  step ".venv is up to date ($(inputs_hash)); nothing to install"
  report_detectron2
  exit 0
fi

step "1/5 virtual environment at $VENV"
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV" || fail "venv" "could not create $VENV with $PY; install python3-venv or set PYTHON=/path/to/python3.11"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools" wheel || fail "build tools" "pip could not install setuptools/wheel; check the package index"

step "2/5 torch and torchvision"
"${PIP[@]}" install -q -c "$CONSTRAINTS" torch torchvision || fail "torch" "pip could not install torch==2.14.1/torchvision==0.29.1; see the pip output above"

step "3/5 mmcv 2.1.0 with compiled ops"
if "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  echo "         already installed"
else
  mkdir -p "$CACHE/wheels"
  TAG=$("$VENV/bin/python" -c 'import torch, sys; v = torch.__version__.split("+")[0]; print(f"torch{v}-py{sys.version_info[0]}{sys.version_info[1]}")')
  WHEEL_DIR=$CACHE/wheels/$TAG
  if ! ls "$WHEEL_DIR"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    echo "         building from the sdist (about 12 minutes on 2 cores; cached in $WHEEL_DIR afterwards)"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation mmcv==2.1.0 -d "$BUILD" \
      || fail "mmcv download" "could not download the mmcv 2.1.0 sdist"
    tar -xzf "$BUILD"/mmcv-2.1.0.tar.gz -C "$BUILD"
    # torch 2.14's headers need C++20; mmcv 2.1.0 hard-codes C++14/17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$BUILD"/mmcv-2.1.0/setup.py
    mkdir -p "$WHEEL_DIR"
    MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$WHEEL_DIR" "$BUILD"/mmcv-2.1.0 \
      || fail "mmcv build" "compiling mmcv's ops failed; the compiler output is above (needs gcc/g++ and the Python headers)"
  fi
  "${PIP[@]}" install -q --no-deps "$WHEEL_DIR"/mmcv-2.1.0-*.whl || fail "mmcv install" "could not install the wheel in $WHEEL_DIR"
fi

step "4/5 mmengine, mmsegmentation and this package (editable, extras seg+dev)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e ".[seg,dev]" || fail "package" "pip install -e .[seg,dev] failed; see the pip output above"

step "5/5 checking the stack"
"$VENV/bin/python" - <<'PY' || fail "check" "the installed stack does not import; rerun 'make setup' after removing .venv"
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmseg, pycocotools
import pretrain, transfer, benchmarks
print(f"         torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__} (ops), "
      f"mmengine {mmengine.__version__}, mmseg {mmseg.__version__}")
PY
inputs_hash > "$STAMP"
report_detectron2
step "done"
