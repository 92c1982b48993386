#!/usr/bin/env bash
# Step 5 of `make setup`: detectron2 at the commit pinned in requirements/constraints.txt (no package
# registry has it). Tries in order and says which way worked:
#   a. already installed at that commit (this script's marker, or pip's record of a git install);
#   b. a wheel in a local wheelhouse, HA_WHEELHOUSE=DIR (pip --find-links style folder of wheels);
#   c. the official source at the pinned commit (pip install git+https://github.com/...@COMMIT; needs GitHub);
#   d. otherwise stop with a message naming the three ways, unless HA_SKIP_DETECTRON2=1 (detection skipped).
# Usage: tools/setup_detectron2.sh VENV     HA_SETUP_DRY_RUN=1 prints the decision and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$1
PY=$VENV/bin/python
CONSTRAINTS=$PWD/requirements/constraints.txt
COMMIT=$(sed -n 's/^# detectron2-commit: *//p' "$CONSTRAINTS")
GIT_URL=${HA_DETECTRON2_GIT:-https://github.com/facebookresearch/detectron2.git}
MARK=$VENV/.detectron2-commit
DRY=${HA_SETUP_DRY_RUN:-0}

say() { printf '[setup] detectron2: %s\n' "$*"; }
decide() { say "$1"; [[ $DRY == 1 ]] && { echo "decision: $2"; exit 0; }; return 0; }

installed_commit() {  # the commit the installed detectron2 was built from, or nothing
  "$PY" - "$MARK" <<'PY' 2>/dev/null || true
import importlib.metadata as md, json, pathlib, sys
import detectron2  # noqa: F401  (must import, not only be listed)
mark = pathlib.Path(sys.argv[1])
if mark.exists():
    print(mark.read_text().split()[0])
else:
    info = json.loads(md.distribution("detectron2").read_text("direct_url.json") or "{}")
    print(info.get("vcs_info", {}).get("commit_id", ""))
PY
}

record() { printf '%s %s\n' "$COMMIT" "$1" > "$MARK"; }

# a. already there
if [[ "$(installed_commit)" == "$COMMIT" ]]; then
  decide "already installed at ${COMMIT:0:7} ($(cut -d' ' -f2- "$MARK" 2>/dev/null || echo 'git install'))" installed
  exit 0
fi
if [[ ${HA_SKIP_DETECTRON2:-0} == 1 ]]; then
  decide "skipped (HA_SKIP_DETECTRON2=1): detection tasks (voc_det, coco_det, coco_instseg) will be reported as skipped" skip
  exit 0
fi

# b. a wheelhouse
if [[ -n ${HA_WHEELHOUSE:-} ]]; then
  WHEEL=$(ls "$HA_WHEELHOUSE"/detectron2-*.whl 2>/dev/null | sort | tail -n 1 || true)
  if [[ -n $WHEEL ]]; then
    decide "installing $WHEEL from the wheelhouse HA_WHEELHOUSE=$HA_WHEELHOUSE (built from ${COMMIT:0:7}, its README says)" "wheelhouse $WHEEL"
    if "$PY" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "$WHEEL" && "$PY" -c 'import detectron2'; then
      record "wheelhouse $(basename "$WHEEL") sha256=$(sha256sum "$WHEEL" | cut -c1-16)"
      say "installed from the wheelhouse"
      exit 0
    fi
    say "the wheel $WHEEL did not install or import (built for another Python/torch?); trying the source"
  else
    say "no detectron2-*.whl in HA_WHEELHOUSE=$HA_WHEELHOUSE; trying the source"
  fi
fi

# c. the official source at the pinned commit
if GIT_TERMINAL_PROMPT=0 timeout 30 git ls-remote "$GIT_URL" HEAD >/dev/null 2>&1; then
  decide "building from $GIT_URL at ${COMMIT:0:7} (a few minutes)" "source $GIT_URL@$COMMIT"
  if "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation -c "$CONSTRAINTS" "git+$GIT_URL@$COMMIT" \
      && "$PY" -c 'import detectron2'; then
    record "source $GIT_URL"
    say "installed from source"
    exit 0
  fi
  say "the source build failed (the compiler output is above)"
else
  say "$GIT_URL is not reachable"
fi

# d. nothing worked
decide "could not be installed" fail
cat >&2 <<MSG

[setup] FAILED at step: detectron2
[setup] detectron2 is on no package registry. Give it to the setup in one of three ways, then rerun 'make setup':
          a. install it yourself into $VENV from the official source at commit $COMMIT
             ($VENV/bin/pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git@$COMMIT');
          b. HA_WHEELHOUSE=/path/to/wheels make setup   (a folder holding a detectron2-*.whl built from that commit,
             e.g. with 'pip wheel --no-deps --no-build-isolation .' in its source tree on a machine with network);
          c. network access to GitHub, and the setup builds it from source itself.
        Or opt out: HA_SKIP_DETECTRON2=1 make setup  (detection tasks are then reported as skipped).
MSG
exit 1
