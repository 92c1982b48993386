"""The evidence experiment (configs/benchmarks/evidence_demo.yaml) at a 2-minute scale: the real suite file
with a tiny world, one epoch and two seeds. It checks the pipeline and that every number of the report
(CSV means and differences, the invariance difference map) is the one recomputed here from the cells'
metrics.json files; not the direction of any effect."""
import csv
import json
import math
import os
import statistics
import subprocess
import sys

import pytest
import yaml
from scipy import stats

from .conftest import ROOT

SMALL = {"--size": "32", "--images": "12", "--pairs": "1"}


def _paired(x: dict, b: dict) -> tuple[float, float, float]:
    d = [x[s] - b[s] for s in sorted(x)]
    half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return statistics.fmean(d), statistics.fmean(d) - half, statistics.fmean(d) + half


@pytest.mark.slow
def test_the_evidence_suite_runs_and_its_report_is_its_cells(tmp_path):
    from benchmarks.demo_world import WorldSpec, generate
    from benchmarks.demo_world.formats import Counts

    data = tmp_path / "data"
    generate(data, WorldSpec(seed=0), Counts(cls_train_per_class=6, cls_val_per_class=3, colour_train_per_class=6,
                                            colour_val_per_class=3), ("imagefolder", "colour"))
    suite = yaml.safe_load((ROOT / "configs/benchmarks/evidence_demo.yaml").read_text())
    suite["seeds"] = [0, 1]
    suite["pretrain"]["overrides"] += ["optim.epochs=1", "optim.batch_size=12", "augment.size=32", "data.workers=0"]
    for task, args in suite["tasks"].items():
        suite["tasks"][task] = [SMALL.get(prev, a) for prev, a in zip([None, *args], args)]
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    env = dict(os.environ, HA_EVIDENCE_DATA=str(data), HA_EVIDENCE_OUT=str(tmp_path / "out"))
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", str(tmp_path / "suite.yaml")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    out = tmp_path / "out"
    cells = {}
    for f in (out / "cells").rglob("metrics.json"):
        row, column, seed = f.parts[-4], f.parts[-3], int(f.parts[-2][1:])
        cells[(row, column, seed)] = json.loads(f.read_text())
    assert len(cells) == 2 * 6 * 2  # rows x task columns x seeds, none failed
    assert {c[1] for c in cells} == {"knn", "knn_colour", "linear_cls", "linear_cls_colour", "colour_probe", "invariance"}
    assert cells[("SimSiam", "knn_colour", 0)]["dataset"] == "demo world, colour x shape (synthetic)"
    assert cells[("SimSiam", "knn_colour", 0)]["metrics"]["top1"] != cells[("SimSiam", "knn", 0)]["metrics"]["top1"] or \
        cells[("SimSiam", "knn_colour", 0)]["classes"] != cells[("SimSiam", "knn", 0)]["classes"]
    slug = {"SimSiam": "SimSiam", "SimSiam + method": "SimSiam-method"}
    with open(out / "results.csv", newline="") as f:
        rows = [x for x in csv.DictReader(f) if x["row"] == "measured"]
    assert len(rows) == 2 * (5 + 4)  # rows x (5 one-column tasks + the invariance task's 4 columns)
    reads = {"top1": ("top1",), "gray@L4": ("matrix", "layer4", "gray", "mean"), "blur@L4": ("matrix", "layer4", "blur", "mean"),
             "flip@L4": ("matrix", "layer4", "flip", "mean"), "jitter@L4": ("matrix", "layer4", "jitter", "mean")}

    def value(row, column, seed, metric):
        v = cells[(slug[row], column.replace("@", "_"), seed)]["metrics"]
        for k in reads[metric]:
            v = v[k]
        return v

    for x in rows:
        per_seed = {s: value(x["checkpoint"], x["task"], s, x["metric"]) for s in (0, 1)}
        assert float(x["mean"]) == pytest.approx(statistics.fmean(per_seed.values()), abs=1e-4), x
        if x["checkpoint"] == "SimSiam + method":
            base = {s: value("SimSiam", x["task"], s, x["metric"]) for s in (0, 1)}
            want = _paired(per_seed, base)
            got = (float(x["delta"]), float(x["delta_ci_low"]), float(x["delta_ci_high"]))
            assert got == pytest.approx(want, abs=1e-4), x
    diff = json.loads((out / "invariance.json").read_text())["invariance"]["difference"]["SimSiam + method"]
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for aug in ("crop", "jitter", "gray", "blur", "flip", "rotation"):
            m = {s: cells[("SimSiam-method", "invariance", s)]["metrics"]["matrix"][layer][aug]["mean"] for s in (0, 1)}
            b = {s: cells[("SimSiam", "invariance", s)]["metrics"]["matrix"][layer][aug]["mean"] for s in (0, 1)}
            got = diff[layer][aug]
            assert (got["mean"], got["low"], got["high"]) == pytest.approx(_paired(m, b), abs=1e-9), (layer, aug)
            assert got["contains_zero"] == (got["low"] <= 0 <= got["high"])
    report = (out / "report.md").read_text()
    assert "## Invariance map (invariance)" in report and "SimSiam + method − SimSiam: difference" in report
    assert (out / "figures/invariance_SimSiam-method_diff.png").stat().st_size > 5000
