"""The benchmark runner: suite checks, mean ± std tables, failure isolation, and restart without redoing
finished cells (real checkpoints, real run_transfer.py cells)."""
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from benchmarks.report import aggregate, write_report
from benchmarks.suite import SuiteError, load_suite

from .conftest import ROOT, write_cell


def _suite(tmp_path, checkpoints, tasks, seeds=(0, 1), baseline=None):
    doc = {"name": "t", "output": str(tmp_path / "bench"), "seeds": list(seeds), "checkpoints": checkpoints, "tasks": tasks}
    if baseline:
        doc["baseline"] = baseline
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("bad,needle", [
    ({"tasks": {"voc_dett": []}}, "tasks.voc_dett: unknown task"),
    ({"checkpoints": [{"path": "x"}]}, "checkpoints[0] needs `name` and one of `path`"),
    ({"checkpoints": [{"name": "a", "path": "x", "config": "y"}]}, "checkpoints[0] needs `name` and one of `path`"),
    ({"checkpoints": [{"name": "a", "config": "nope.yaml"}]}, "checkpoints[0].config"),
    ({"checkpoints": [{"name": "a", "path": "random", "overrides": ["x=1"]}]}, "only applies to a `config` row"),
    ({"tasks": {"knn": ["--data", "${HA_SURELY_UNSET_VAR}"]}}, "HA_SURELY_UNSET_VAR} is not set"),
    ({"pretrain": {"launcher": "x"}}, "pretrain takes overrides"),
    ({"baseline": "nope"}, "baseline 'nope' is not a checkpoint name"),
    ({"seeds": "0"}, "seeds must be a list of integers"),
])
def test_suite_errors_name_the_key(tmp_path, bad, needle):
    doc = {"checkpoints": [{"name": "a", "path": "random"}], "tasks": {"knn": []}, **bad}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_suite(tmp_path / "s.yaml")


def test_aggregation_mean_std_delta_and_flags(tmp_path):
    path = _suite(tmp_path, [{"name": "base", "path": "random"}, {"name": "ours", "path": "random"}],
                  {"voc_det": [], "voc_seg": []}, seeds=(0, 1), baseline="base")
    suite = load_suite(path)
    values = {("base", 0): 50.0, ("base", 1): 52.0, ("ours", 0): 53.0, ("ours", 1): 55.0}
    for ck in suite.checkpoints:
        for seed in suite.seeds:
            v = values[(ck.name, seed)]
            write_cell(suite, ck, "voc_det", seed, {"protocol": "standard", "bbox": {"AP50": v, "AP": v - 20, "AP75": v - 10}})
    write_cell(suite, suite.checkpoints[1], "voc_seg", 0, {"protocol": "non-standard", "mIoU": 60.0})
    rows = {(r["checkpoint"], r["task"], r["metric"]): r for r in aggregate(suite)}
    assert rows[("ours", "voc_det", "AP50")]["mean"] == 54.0 and rows[("ours", "voc_det", "AP50")]["std"] == pytest.approx(1.41421, 1e-4)
    assert rows[("ours", "voc_det", "AP50")]["delta"] == 3.0 and rows[("base", "voc_det", "AP50")]["delta"] is None
    assert rows[("ours", "voc_seg", "mIoU")]["n"] == 1 and rows[("base", "voc_seg", "mIoU")]["mean"] is None
    report = write_report(suite).read_text()
    assert "| ours |  |  |  | 54.00 ± 1.41 (+3.00) |" in report and "60.00†" in report and "non-standard protocol" in report
    assert "MoCo v2 200e" in report  # published rows, apart from the measured ones
    assert (suite.output / "figures/voc_det.png").stat().st_size > 1000
    assert "\\multicolumn{3}{c}{VOC07+12 det}" in (suite.output / "results.tex").read_text()
    csv = (suite.output / "results.csv").read_text().splitlines()
    assert csv[0].startswith("row,checkpoint") and any(line.startswith("published,MoCo v2 200e") for line in csv)


def test_a_killed_cell_with_a_metrics_file_is_not_done_and_not_reported(tmp_path):
    """A job killed after its evaluation wrote metrics.json (its run.json still "running"): the cell is to run (and
    resumes), not finished, not deleted as stale; the report counts only the finished seed."""
    import json

    path = _suite(tmp_path, [{"name": "ours", "path": "random"}], {"voc_seg": []}, seeds=(0, 1))
    suite = load_suite(path)
    ck = suite.checkpoints[0]
    for seed, v in ((0, 60.0), (1, 99.0)):
        write_cell(suite, ck, "voc_seg", seed, {"protocol": "standard", "mIoU": v})
    run = suite.cell_dir(ck, "voc_seg", 1) / "run.json"
    run.write_text(json.dumps({**json.loads(run.read_text()), "status": "running"}))
    assert suite.cell_state(ck, "voc_seg", 0)[0] == "done"
    state, why = suite.cell_state(ck, "voc_seg", 1)
    assert state == "todo" and "still running" in why[0]
    (row,) = [r for r in aggregate(suite) if r["metric"] == "mIoU"]
    assert row["n"] == 1 and row["mean"] == 60.0
    assert "99.00" not in write_report(suite).read_text()


@pytest.mark.parametrize("code,result,status", [(0, True, "done"), (0, False, "failed"), (75, False, "preempted"),
                                                (3, True, "failed")])
def test_a_cell_is_done_only_when_its_command_succeeds_and_its_result_is_there(tmp_path, code, result, status):
    """A command that exits 0 without writing its result (a crash the tool swallowed, a wrong output folder) is a
    failed cell with failed.json, never "done"; 75 is a preemption (requeued), any other code a failure."""
    import json
    import sys

    from benchmarks.cells import _run_logged

    cmd = [sys.executable, "-c", f"print('error: planted'); raise SystemExit({code})"]
    assert _run_logged(cmd, tmp_path, "cell.log", {"cell": "x"}, lambda: result) == status
    failed = tmp_path / "failed.json"
    assert failed.exists() == (status == "failed")
    if status == "failed":
        assert json.loads(failed.read_text())["returncode"] == code


@pytest.mark.slow
def test_suite_runs_isolates_failures_and_restarts_without_redoing_cells(demo_world, demo_pretrained, tmp_path):
    ckpt, _ = demo_pretrained
    (tmp_path / "corrupt.pth").write_bytes(b"\x00" * 100)
    common = ["--data", str(demo_world / "imagefolder"), "--dataset", "demo", "--size", "64", "--workers", "0", "--arch", "resnet18"]
    path = _suite(tmp_path, [{"name": "random init", "path": "random", "method": "none"},
                             {"name": "pretrained", "path": str(ckpt), "method": "SimSiam-hier", "epochs": 6, "data": "demo"},
                             {"name": "corrupt", "path": str(tmp_path / "corrupt.pth")}],
                  {"knn": common, "linear_cls": [*common, "--fast"]}, baseline="random init")
    cmd = [sys.executable, "-m", "benchmarks.run", str(path)]
    first = tmp_path / "bench/cells/pretrained/knn/s0/metrics.json"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not first.exists():
        assert proc.poll() is None and time.sleep(0.2) is None
    os.killpg(proc.pid, 9)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "bench/cells").rglob("metrics.json")}
    assert len(done) >= 5  # random init: 4 cells, pretrained/knn/s0
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 1, r.stderr[-2000:]  # one checkpoint's cells failed
    assert f"{len(done)} finished" in r.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished cells were not redone
    assert len(list((tmp_path / "bench/cells").rglob("metrics.json"))) == 8
    failed = list((tmp_path / "bench/cells/corrupt").rglob("failed.json"))
    assert len(failed) == 4 and "not a readable PyTorch checkpoint" in json.loads(failed[0].read_text())["error"]
    report = (tmp_path / "bench/report.md").read_text()
    assert "| pretrained | SimSiam-hier | 6 | demo |" in report and " ± " in report and "FAILED corrupt / knn / seed 0" in report
    rows = {(r["checkpoint"], r["task"]): r for r in aggregate(load_suite(path)) if r["metric"] == "top1"}
    assert rows[("pretrained", "knn")]["n"] == 2 and rows[("pretrained", "knn")]["delta"] > 0


def test_paper_protocol_rows_and_reference_protocols_are_marked(tmp_path):
    """Published cells measured with another protocol than the column's carry a mark and their note;
    rows run with the paper's protocol get §."""
    path = _suite(tmp_path, [{"name": "ours", "path": "random", "data": "IN-1k"}], {"linear_cls": []}, seeds=(0,))
    suite = load_suite(path)
    write_cell(suite, suite.checkpoints[0], "linear_cls", 0, {"protocol": "paper", "top1": 61.25, "dataset": "ImageNet-1K"})
    report = write_report(suite).read_text()
    assert "61.25§" in report and "§ the paper's protocol" in report
    assert "76.1¹" in report and "\n¹ supervised end-to-end training (torchvision R50), not a linear probe" in report
    assert "70.0²" in report and "\n² SimSiam's linear probe (LARS" in report  # each note its own mark
    assert "67.5 |" in report  # MoCo v2's own protocol: no mark
    import csv

    with open(suite.output / "results.csv", newline="") as f:
        published = {(r["checkpoint"], r["metric"]): r for r in csv.DictReader(f) if r["row"] == "published"}
    assert published[("supervised IN-1k", "top1")]["protocol"].startswith("supervised end-to-end training")
    assert published[("MoCo v2 200e", "top1")]["protocol"] == "standard, R50"
    tex = (suite.output / "results.tex").read_text()
    assert "76.1$^1$" in tex and "70.0$^2$" in tex and "% $^1$ supervised end-to-end training" in tex


def test_a_footnote_appears_only_with_the_value_it_explains(tmp_path):
    """A suite that probes the demo world shows no published linear values, so none of their notes."""
    path = _suite(tmp_path, [{"name": "ours", "path": "random", "data": "demo"}], {"voc_det": [], "linear_cls": []}, seeds=(0,))
    suite = load_suite(path)
    write_cell(suite, suite.checkpoints[0], "voc_det", 0, {"protocol": "demo", "bbox": {"AP50": 5.0, "AP": 2.0, "AP75": 1.0}})
    write_cell(suite, suite.checkpoints[0], "linear_cls", 0, {"protocol": "demo", "top1": 50.0, "dataset": "demo world (synthetic)"})
    report = write_report(suite).read_text()
    assert "| standard, R50 | – | 81.3 | 53.5 | 58.8 |" in report  # supervised IN-1k: VOC values, no linear value
    assert "linear probe" not in report.split("## Published reference rows")[1].split("## ")[0]


@pytest.mark.slow
def test_the_demo_ablation_runs_from_configs_resumes_after_a_kill_and_reports_intervals(demo_world, tmp_path):
    """configs/benchmarks/ablation_demo.yaml as shipped: six rows pretrained from their configs (per seed),
    kNN and colour probes, killed during the third row's pretraining and rerun: finished pretrainings and
    cells are kept, the rest completes, the report shows every row's difference with its interval."""
    env = dict(os.environ, HA_DEMO_DATA=str(demo_world), HA_DEMO_OUT=str(tmp_path))
    cmd = [sys.executable, "-m", "benchmarks.run", str(ROOT / "configs/benchmarks/ablation_demo.yaml")]
    out = tmp_path / "ablation"
    third = out / "pretrain/hier.-strength/s0/pretrain.log"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not third.exists():
        assert proc.poll() is None and time.sleep(0.2) is None
    os.killpg(proc.pid, 9)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name in ("metrics.json", "pretrain_summary.json")}
    assert sum(p.name == "pretrain_summary.json" for p in kept) == 4 and sum(p.name == "metrics.json" for p in kept) == 12
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "12 pretrainings, 8 to run" in r.stdout and "12 finished, 24 to run" in r.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing finished was redone
    summary = json.loads((out / "pretrain/full-method/s1/pretrain_summary.json").read_text())
    assert summary["steps"] == summary["total_steps"] == 5 and summary["hier"] and summary["expand"]
    cfg = yaml.safe_load((out / "pretrain/SimSiam/s1/config.yaml").read_text())
    assert cfg["train"]["seed"] == 1 and cfg["hier"]["enabled"] is False and cfg["method"]["arch"] == "resnet18"
    report = (out / "report.md").read_text()
    diffs = report.split("## Differences to SimSiam")[1].split("##")[0]
    for row in ("uniform", "hier. strength", "hierarchy only", "expansion only", "full method"):
        line = next(x for x in diffs.splitlines() if x.startswith(f"| {row} |"))
        assert line.count("[") == 3, line  # kNN, colour probe, colour probe layer2: an interval each
    assert "36 finished, 0 failed" in report and "colour probe layer2" in report


@pytest.mark.parametrize("per_seed", [True, False])
def test_config_rows_pretrain_per_seed_and_feed_their_cells(tmp_path, per_seed, monkeypatch, capsys):
    from benchmarks.cells import cell_command, pretrain_command
    from benchmarks.submit import parameters, submit

    monkeypatch.setenv("HA_TEST_DATA", "/data/x")
    cfg = "configs/pretrain/simsiam-hier-noexpand_resnet50_8xb32-coslr-200e_in100.yaml"
    doc = {"name": "abl", "output": str(tmp_path / "bench"), "seeds": [0, 1], "baseline": "file",
           "pretrain": {"per_seed": per_seed, "overrides": ["data.train=${HA_TEST_DATA}/train"], "launch": "torchrun --nproc_per_node 8"},
           "checkpoints": [{"name": "file", "path": "random"}, {"name": "no exp", "config": cfg, "overrides": ["optim.epochs=3"]}],
           "tasks": {"knn": ["--data", "${HA_TEST_DATA}"], "knn@layer2": ["--stage", "2"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    suite = load_suite(tmp_path / "s.yaml")
    row = suite.checkpoints[1]
    assert row.config == str(ROOT / cfg) and suite.tasks["knn"] == ["--data", "/data/x"]
    assert suite.pretrainings(suite.checkpoints[0]) == [] and suite.pretrainings(row) == ([0, 1] if per_seed else [None])
    pdir = tmp_path / "bench/pretrain/no-exp" / ("s1" if per_seed else "")
    assert suite.weights(row, 1) == str(pdir / "last.pth") and suite.weights(suite.checkpoints[0], 1) == "random"
    cmd = pretrain_command(suite, row, 1 if per_seed else None)
    # one node: torchrun gets --standalone (a free port; two suites on a node do not collide)
    assert cmd[:6] == ["torchrun", "--standalone", "--nproc_per_node", "8", "-m", "pretrain.train"] and cmd[6] == row.config
    assert cmd[7:] == ["data.train=/data/x/train", "optim.epochs=3", *(["train.seed=1"] if per_seed else []), f"train.output={pdir}"]
    cell = cell_command(suite, row, "knn@layer2", 1)
    assert cell[cell.index("--task") + 1] == "knn" and cell[cell.index("--weights") + 1] == str(pdir / "last.pth")
    assert cell[cell.index("--output") + 1] == str(tmp_path / "bench/cells/no-exp/knn_layer2/s1") and cell[-2:] == ["--stage", "2"]
    capsys.readouterr()
    jobs = submit(suite, suite.cells(), "slurm", parameters(["gpus_per_node=8"]), dry_run=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(jobs) == len(lines) == 8 + (2 if per_seed else 1)
    pre = [f"<no exp / pretraining / seed {s}>" for s in (0, 1)] if per_seed else ["<no exp / pretraining>"]
    assert [j for _, j in jobs if "pretraining" in j] == pre
    # a config row's cells wait for their own pretraining; the file row's cells for nothing
    assert f"[slurm] would submit no exp / knn@layer2 / seed 1 -> {tmp_path / 'bench/cells/no-exp/knn_layer2/s1'} (after {pre[-1]})" in lines
    assert all("(after" not in line for line in lines if "file /" in line)


def test_reference_rows_are_the_published_numbers():
    """Transcribed by hand from the sources each row names (MoCo detection README, SimSiam Tables 4/5, MoCo
    paper Table 2b, mmselfsup 0.x model zoo, as collected in the project's anchors notes)."""
    from benchmarks.references import REFERENCES

    published = {  # row -> (VOC AP50, AP, AP75, COCO box AP, COCO mask AP, VOC12aug mIoU, linear top-1)
        "supervised IN-1k": (81.3, 53.5, 58.8, 38.2, 33.3, None, 76.1),
        "random init": (60.2, 33.8, 33.1, 26.4, 29.3, None, None),
        "MoCo v2 200e": (82.4, 57.0, 63.6, 39.2, 34.3, 67.55, 67.5),
        "SimSiam 200e (base)": (82.0, 56.4, 62.8, 37.9, 33.2, None, 70.0),
        "BYOL 200e": (81.4, 55.3, 61.1, 37.9, 33.2, 67.16, 70.6),
    }
    keys = [("voc_det", "AP50"), ("voc_det", "AP"), ("voc_det", "AP75"), ("coco_det", "APbb"), ("coco_instseg", "APmk"),
            ("voc_seg", "mIoU"), ("linear_cls", "top1")]
    assert [r["name"] for r in REFERENCES] == list(published)
    for ref in REFERENCES:
        want = {k: v for k, v in zip(keys, published[ref["name"]]) if v is not None}
        want[("coco_instseg", "APbb")] = want[("coco_det", "APbb")]
        assert ref["values"] == want, ref["name"]


@pytest.mark.parametrize("tamper,why", [
    (lambda m: dict(m, seed=0), "seed 0, this cell's is 1"),                    # seed 0's result copied into seed 1
    (lambda m: dict(m, task="linear_cls"), "task 'linear_cls', this cell's is 'knn'"),
    (lambda m: {k: v for k, v in m.items() if k != "schema"} | {"top1": 99.0}, "schema None"),  # written before the schema
])
def test_a_result_that_is_not_this_cells_is_stale_and_never_reported(tmp_path, tamper, why):
    """Numbers at the door: a finished run's request matching is not enough; metrics.json itself must be a
    result of this schema, task and seed, else the cell is stale (rerun, not reported)."""
    suite = load_suite(_suite(tmp_path, [{"name": "a", "path": "random"}], {"knn": []}, seeds=(0, 1)))
    for seed in (0, 1):
        write_cell(suite, suite.checkpoints[0], "knn", seed, {"protocol": "standard", "top1": 40.0 + seed})
    f = suite.cell_dir(suite.checkpoints[0], "knn", 1) / "metrics.json"
    f.write_text(json.dumps(tamper(json.loads(f.read_text()))))
    state, diff = suite.cell_state(suite.checkpoints[0], "knn", 1)
    assert state == "stale" and any(why in d for d in diff), diff
    row = next(r for r in aggregate(suite) if r["metric"] == "top1")
    assert row["values"] == {0: 40.0} and row["n"] == 1
    assert "1 finished with other inputs" in write_report(suite).read_text()


def test_the_invariance_difference_table_marks_exactly_the_cells_whose_interval_excludes_zero(tmp_path):
    """Three paired seeds per cell. layer1/flip: differences 0.3, 0.4, 0.5 -> +0.400 [+0.152, +0.648] *; layer1/gray:
    0.1, 0.2, 0.3 -> +0.200 [-0.048, +0.448] (no mark); layer2/flip: -0.5, -0.4, -0.3 -> -0.400 [-0.648, -0.152] *;
    layer2/gray: 0 -> +0.000 [+0.000, +0.000] (a zero-width interval at 0 contains 0: no mark). Half width
    t(0.975, 2) 4.3027 x 0.1 / sqrt(3) = 0.2484 (tables); columns in the maps' order, rows in layer order."""
    from benchmarks.invariance_report import section

    suite = load_suite(_suite(tmp_path, [{"name": "base", "path": "random"}, {"name": "ours", "path": "random"}],
                              {"invariance": []}, seeds=(0, 1, 2), baseline="base"))
    diffs = {("layer1", "flip"): (0.3, 0.4, 0.5), ("layer1", "gray"): (0.1, 0.2, 0.3),
             ("layer2", "flip"): (-0.5, -0.4, -0.3), ("layer2", "gray"): (0.0, 0.0, 0.0)}

    def matrix(row, seed):
        return {layer: {aug: {"mean": 0.5 + (diffs[(layer, aug)][seed] if row == "ours" else 0.0)} for aug in ("flip", "gray")}
                for layer in ("layer1", "layer2")}

    cells = {(row, "invariance"): {"metrics": [{"seed": s, "metrics": {"matrix": matrix(row, s)}} for s in (0, 1, 2)]}
             for row in ("base", "ours")}
    (tmp_path / "figs").mkdir()
    suite.output.mkdir(parents=True)
    md, _ = section(suite, cells, tmp_path / "figs")
    assert "| stage | flip | gray |" in md
    assert "| layer1 | +0.400 [+0.152, +0.648] * | +0.200 [-0.048, +0.448] |" in md
    assert "| layer2 | -0.400 [-0.648, -0.152] * | +0.000 [+0.000, +0.000] |" in md


def _diff_rows(*intervals):
    """Difference rows: (delta, low, high) per checkpoint; low None for one seed."""
    return [{"checkpoint": f"ckpt{i}", "delta": d, "delta_low": lo, "delta_high": hi,
             "delta_contains_zero": None if lo is None else lo <= 0 <= hi} for i, (d, lo, hi) in enumerate(intervals)]


@pytest.mark.parametrize("intervals, legend, hatched, grey, ci_in_title", [
    # one seed only: no interval anywhere -> no hatching, no "CI" in the title, the grey entry alone
    ([(5.0, None, None)], ["1 seed: no interval"], [False], [True], False),
    ([(1.0, 0.5, 1.5)], ["95% CI excludes 0"], [False], [False], True),
    # excludes, contains (hatched), one seed (grey): each drawn kind once in the legend, in this order
    ([(1.0, 0.5, 1.5), (0.2, -0.3, 0.7), (-2.0, None, None)],
     ["95% CI excludes 0", "95% CI contains 0", "1 seed: no interval"], [False, True, False], [False, False, True], True),
])
def test_the_difference_figure_legend_names_what_is_drawn_and_no_text_overlaps(intervals, legend, hatched, grey, ci_in_title):
    """The difference figure (hand-made rows): bars hatched exactly where the interval contains 0, grey exactly for
    one seed, a legend listing only the kinds drawn, the title mentioning intervals only when one is drawn, and
    no two texts (title, axis label, tick labels, legend) overlapping or leaving the figure at its size."""
    from types import SimpleNamespace

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from benchmarks.report import _diff_figure

    fig = _diff_figure(SimpleNamespace(baseline="base"), "kNN ImageNet-100 top1", "top1", _diff_rows(*intervals))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == legend
    assert [bool(b.get_hatch()) for b in ax.patches] == hatched
    assert [to_hex(b.get_facecolor()) == "#bbbbbb" for b in ax.patches] == grey
    title = ax.get_title()
    assert ("CI" in title) == ci_in_title and "hatched" not in title
    fig.canvas.draw()  # legend texts take their places at drawing
    renderer = fig.canvas.get_renderer()
    texts = [ax.title, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_legend().get_texts(), *ax.texts]
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    inside = fig.bbox
    for i, a in enumerate(boxes):
        assert inside.x0 <= a.x0 and a.x1 <= inside.x1 + 0.5 and inside.y0 <= a.y0 and a.y1 <= inside.y1 + 0.5, texts[i].get_text()
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)
