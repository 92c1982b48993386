#!/usr/bin/env bash
# Create .venv with the pinned, tested stack (`make setup` runs this; it is idempotent).
#
# Steps: venv -> torch/torchvision -> mmcv 2.1.0 with compiled ops (from HA_WHEELHOUSE if it has the
# wheel, else built once from its sdist, patched for torch 2.14's C++20 headers, cached as a wheel)
# -> mmengine/mmseg -> this package -> detectron2 at the pinned commit (tools/setup_detectron2.sh:
# installed / HA_WHEELHOUSE / official source; HA_SKIP_DETECTRON2=1 opts out).
# A second run whose inputs did not change (files, wheelhouse contents, opt-out) only checks the stamp.
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

WHEELHOUSE=${HA_WHEELHOUSE:-}
[[ -z $WHEELHOUSE || -d $WHEELHOUSE ]] || fail "wheelhouse" "HA_WHEELHOUSE=$WHEELHOUSE is not a folder"

inputs_hash() {
  { cat "$CONSTRAINTS" setup.py tools/setup_env.sh tools/setup_detectron2.sh
    echo "skip-detectron2=${HA_SKIP_DETECTRON2:-0} wheelhouse=$WHEELHOUSE"
    if [[ -n $WHEELHOUSE ]]; then ls -l "$WHEELHOUSE"/*.whl 2>/dev/null || true; fi
  } | sha256sum | cut -c1-16
}

[[ ${1:-} == --inputs-hash ]] && { inputs_hash; exit 0; }  # for tests: what the stamp would hold
if [[ -f $STAMP && "$(cat "$STAMP")" == "$(inputs_hash)" ]]; then
  step ".venv is up to date ($(inputs_hash)); nothing to install"
  exit 0
fi

step "1/6 virtual environment at $VENV"
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV" || fail "venv" "could not create $VENV with $PY; install python3-venv or set PYTHON=/path/to/python3.11"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools" wheel || fail "build tools" "pip could not install setuptools/wheel; check the package index"

step "2/6 torch and torchvision"
"${PIP[@]}" install -q -c "$CONSTRAINTS" torch torchvision || fail "torch" "pip could not install torch==2.14.1/torchvision==0.29.1; see the pip output above"

step "3/6 mmcv 2.1.0 with compiled ops"
if "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  echo "         already installed"
elif [[ -n $WHEELHOUSE ]] && ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl >/dev/null 2>&1 \
    && "${PIP[@]}" install -q --no-deps --no-index --find-links "$WHEELHOUSE" mmcv==2.1.0; then
  echo "         installed from the wheelhouse $WHEELHOUSE (its ops are checked in step 6, once mmengine is there)"
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
  echo "         installed from $WHEEL_DIR"
fi

step "4/6 mmengine, mmsegmentation and this package (editable, extras seg+dev)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e ".[seg,dev]" || fail "package" "pip install -e .[seg,dev] failed; see the pip output above"

step "5/6 detectron2"
bash tools/setup_detectron2.sh "$VENV" || exit 1

step "6/6 checking the stack"
"$VENV/bin/python" - <<'PY' || fail "check" "the installed stack does not import; rerun 'make setup' after removing .venv"
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmseg, pycocotools
import pretrain, transfer, benchmarks
print(f"         torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__} (ops), "
      f"mmengine {mmengine.__version__}, mmseg {mmseg.__version__}")
PY
"$VENV/bin/python" -c 'import detectron2; print(f"         detectron2 {detectron2.__version__}: detection transfer enabled")' 2>/dev/null \
  || echo "         detectron2 not installed (opted out): detection tasks are reported as skipped"
inputs_hash > "$STAMP"
step "done"
