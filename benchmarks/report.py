"""Aggregate a suite's finished cells: mean ± std over seeds, tables (Markdown, CSV, LaTeX), one figure
per task, published reference rows apart, non-standard protocols flagged, and differences to a baseline
row with 95% confidence intervals over seeds (`stats.difference`: paired by seed where seeds match)."""
from __future__ import annotations

import csv
import json
import statistics
import textwrap
from datetime import datetime, timezone
from pathlib import Path

from transfer.tasks import TASKS, task_of

from .invariance_report import section as invariance_section
from .references import REFERENCES
from .stats import difference
from .suite import Suite

# task -> [(column, how to read it from metrics.json)]: a view of the task table (transfer/tasks.py)
COLUMNS = {t.name: [(col, lambda m, t=t, col=col: t.metric(m, col)) for col, _ in t.columns] for t in TASKS.values()}
FLAG = {"non-standard": "†", "demo": "‡", "paper": "§"}


SUPERSCRIPT = "¹²³⁴⁵⁶⁷⁸⁹"


def _ref_notes(refs: list[dict]) -> dict[str, str]:
    """The notes of the published values shown (another protocol than the column's) -> their marks ¹, ², ...
    in order of appearance; a note of a value the table does not show gets no mark and no footnote."""
    notes = dict.fromkeys(n for ref in refs for k in ref["values"] if (n := ref.get("notes", {}).get(k)))
    return {n: SUPERSCRIPT[i] for i, n in enumerate(notes)}


def _ref_cell(ref: dict, key: tuple[str, str], marks: dict[str, str]) -> str:
    """A published value, with the mark of its note when it was measured with another protocol than the column's."""
    if key not in ref["values"]:
        return "–"
    return f"{ref['values'][key]:.1f}" + marks.get(ref.get("notes", {}).get(key), "")


def _cells(suite: Suite) -> dict:
    """{(checkpoint name, task): {"metrics": [...], "failed": [...], "skipped": [...], "stale": [...]}}; a cell's
    metrics count only when its run recorded the inputs the suite gives it now (`Suite.cell_state`)."""
    out = {}
    for ckpt, task, seed in suite.cells():
        d = suite.cell_dir(ckpt, task, seed)
        entry = out.setdefault((ckpt.name, task), {"metrics": [], "failed": [], "skipped": [], "stale": []})
        state, diff = suite.cell_state(ckpt, task, seed)
        if state == "stale":
            entry["stale"].append({"seed": seed, "differences": diff})
        for name, key, want in (("metrics.json", "metrics", "done"), ("failed.json", "failed", "failed"),
                                ("skipped.json", "skipped", "skipped")):
            if state == want:
                entry[key].append(dict(json.loads((d / name).read_text()), seed=seed))
    return out


def columns_of(task: str) -> list:
    """(column, reader) pairs of a suite column (`knn@layer2` reads like `knn`)."""
    return COLUMNS[task_of(task)]


def aggregate(suite: Suite) -> list[dict]:
    """One record per (checkpoint, task, column): mean, std (sample, over seeds), n, the value per seed,
    protocols, and with a baseline its difference (`stats.difference`: delta, delta_low/high, delta_n,
    delta_kind, delta_contains_zero)."""
    cells = _cells(suite)
    rows = []
    for ckpt in suite.checkpoints:
        for task in suite.tasks:
            ms = cells[(ckpt.name, task)]["metrics"]
            for col, read in columns_of(task):
                vals = {m["seed"]: float(read(m)) for m in ms}
                rows.append({"checkpoint": ckpt.name, "method": ckpt.method, "epochs": ckpt.epochs, "data": ckpt.data,
                             "task": task, "metric": col, "n": len(vals), "values": vals,
                             "mean": statistics.fmean(vals.values()) if vals else None,
                             "std": statistics.stdev(vals.values()) if len(vals) > 1 else (0.0 if vals else None),
                             "protocols": sorted({m["protocol"] for m in ms}),
                             "protocol_names": sorted({m.get("protocol_name") or m.get("preset", "") for m in ms} - {""}),
                             "stages": sorted({m.get("stage", 4) for m in ms}),
                             "dataset": next((m.get("dataset") for m in ms if m.get("dataset")), None)})
    if suite.baseline:
        base = {(r["task"], r["metric"]): r["values"] for r in rows if r["checkpoint"] == suite.baseline}
        for r in rows:
            b = base.get((r["task"], r["metric"]))
            d = difference(r["values"], b) if r["checkpoint"] != suite.baseline and b else {}
            r.update({"delta": d.get("delta")}, **{f"delta_{k}": d.get(k) for k in ("low", "high", "n", "kind", "contains_zero")})
    return rows


def _fmt(r: dict, with_delta: bool = True) -> str:
    if r["mean"] is None:
        return "–"
    s = f"{r['mean']:.2f} ± {r['std']:.2f}" if r["n"] > 1 else f"{r['mean']:.2f}"
    s += "".join(FLAG[p] for p in r["protocols"] if p in FLAG)
    if with_delta and r.get("delta") is not None:
        s += f" ({r['delta']:+.2f})"
    return s


def _references(suite: Suite, rows: list[dict]) -> list[dict]:
    """Published rows restricted to the suite's columns; classification values (ImageNet-1K top-1) only
    where the suite probes ImageNet-1K too."""
    if not suite.references:
        return []
    cols = set(_columns(suite))
    datasets = {r["task"]: r["dataset"] for r in rows if r["dataset"]}
    stages = {r["task"]: r["stages"] for r in rows if r["stages"]}
    keep = lambda t, m: ((t, m) in cols and stages.get(t, [4]) == [4]  # published values are last-stage features
                         and (t not in ("linear_cls", "knn") or datasets.get(t) == "ImageNet-1K"))
    refs = [dict(ref, values={k: v for k, v in ref["values"].items() if keep(*k)}) for ref in REFERENCES]
    return [ref for ref in refs if ref["values"]]


def _columns(suite: Suite) -> list[tuple[str, str]]:
    return [(t, c) for t in suite.tasks for c, _ in columns_of(t)]


def _title(task: str) -> str:
    """`knn` -> "kNN", `knn@layer2` -> "kNN layer2"."""
    base, _, label = task.partition("@")
    return f"{TASKS[base].title} {label}".strip()


def _header(suite: Suite, rows: list[dict], task: str, col: str) -> str:
    title = _title(task)
    if task_of(task) in ("linear_cls", "knn", "colour_probe"):
        ds = next((r["dataset"] for r in rows if r["task"] == task and r["dataset"]), None)
        title = f"{title} {ds}" if ds else title
        stages = sorted({s for r in rows if r["task"] == task for s in r["stages"]} - {4})
        title += "".join(f" layer{s}" for s in stages if f"layer{s}" not in task)
    return f"{title} {col}"


def ci_text(r: dict) -> str:
    """A difference cell: "+1.23 [+0.45, +2.01]", "... (0 in CI)" when the interval contains 0, or the
    difference alone "(1 seed: no interval)"; "–" without values."""
    if r.get("delta") is None:
        return "–"
    if r["delta_low"] is None:
        return f"{r['delta']:+.2f} (1 seed: no interval)"
    return f"{r['delta']:+.2f} [{r['delta_low']:+.2f}, {r['delta_high']:+.2f}]" + (" (0 in CI)" if r["delta_contains_zero"] else "")


def _figures(suite: Suite, rows: list[dict], folder: Path) -> list[Path]:
    """Per task column: <task>.png, mean ± std over seeds per row; with a baseline, <task>_diff.png, each
    row's difference to it with its 95% confidence interval (`_diff_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in suite.tasks:
        col = columns_of(task)[0][0]
        sel = [r for r in rows if r["task"] == task and r["metric"] == col and r["mean"] is not None]
        if not sel:
            continue
        flags = "".join(sorted({FLAG[p] for r in sel for p in r["protocols"] if p in FLAG}))
        header = _header(suite, rows, task, col)
        name = task.replace("@", "_")
        width = 1.6 + 1.3 * len(sel)
        fig, ax = plt.subplots(figsize=(width, 3.2))
        ax.bar(range(len(sel)), [r["mean"] for r in sel], yerr=[r["std"] for r in sel], capsize=4,
               color=["#4c72b0" if r["checkpoint"] != suite.baseline else "#999999" for r in sel])
        ax.set_xticks(range(len(sel)), [r["checkpoint"] for r in sel], rotation=15, ha="right", fontsize=8)
        ax.set_ylabel(col)
        ax.set_title(_wrap(f"{header} (mean ± std over seeds){' ' + flags if flags else ''}", width), fontsize=8)
        paths.append(_save(fig, folder / f"{name}.png"))
        diff = [r for r in sel if r.get("delta") is not None]
        if not diff:
            continue
        fig = _diff_figure(suite, header, col, diff)
        paths.append(_save(fig, folder / f"{name}_diff.png"))
    return paths


# how a difference bar is drawn, by what its interval says: (legend text, face colour, hatch, alpha)
DIFF_KINDS = {"excludes": ("95% CI excludes 0", "#4c72b0", "", 1.0), "contains": ("95% CI contains 0", "#4c72b0", "//", 0.5),
              "one_seed": ("1 seed: no interval", "#bbbbbb", "", 1.0)}


def diff_kind(r: dict) -> str:
    """Which of `DIFF_KINDS` a difference row is: one seed has no interval at all, which is not "contains 0"."""
    return "one_seed" if r["delta_low"] is None else "contains" if r["delta_contains_zero"] else "excludes"


def _diff_figure(suite: Suite, header: str, col: str, diff: list[dict]):
    """Bars of each row's difference to the baseline with its 95% interval, drawn by `diff_kind`; a legend
    (right of the axes) names exactly the kinds drawn, and the title says "95% CI over seeds" only where an
    interval is drawn."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    kinds = [diff_kind(r) for r in diff]
    width = 3.2 + 1.3 * len(diff)
    fig, ax = plt.subplots(figsize=(width, 3.2))
    err = [[r["delta"] - r["delta_low"] if r["delta_low"] is not None else 0 for r in diff],
           [r["delta_high"] - r["delta"] if r["delta_high"] is not None else 0 for r in diff]]
    bars = ax.bar(range(len(diff)), [r["delta"] for r in diff], yerr=err, capsize=4)
    for bar, kind in zip(bars, kinds):
        _, colour, hatch, alpha = DIFF_KINDS[kind]
        bar.set(facecolor=colour, hatch=hatch, alpha=alpha)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(diff)), [r["checkpoint"] for r in diff], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(f"{col} − {suite.baseline}")
    drawn = [k for k in DIFF_KINDS if k in kinds]
    ax.legend(handles=[Patch(facecolor=DIFF_KINDS[k][1], hatch=DIFF_KINDS[k][2], alpha=DIFF_KINDS[k][3], label=DIFF_KINDS[k][0])
                       for k in drawn], fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    over = " (95% CI over seeds)" if any(k != "one_seed" for k in kinds) else ""
    ax.set_title(_wrap(f"{header}: difference to {suite.baseline}{over}", width - 1.6), fontsize=8)
    fig.tight_layout()
    return fig


def _wrap(title: str, width_inches: float) -> str:
    """A title broken into lines that fit a figure `width_inches` wide at font size 8 (about 12 characters an inch)."""
    return "\n".join(textwrap.wrap(title, max(24, int(12 * width_inches))))


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _latex(suite: Suite, rows: list[dict]) -> str:
    cols = _columns(suite)
    by = {(r["checkpoint"], r["task"], r["metric"]): r for r in rows}
    latex = {"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
             "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "±": r"$\pm$", "‡": r"$^\ddagger$", "†": r"$^\dagger$", "§": r"\S{}",
             **{m: f"$^{i}$" for i, m in enumerate(SUPERSCRIPT, 1)}}
    esc = lambda s: "".join(latex.get(ch, ch) for ch in str(s))
    groups = " & ".join(rf"\multicolumn{{{len(columns_of(t))}}}{{c}}{{{esc(_title(t))}}}" for t in suite.tasks)
    head = [r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule", f" & {groups} \\\\",
            "checkpoint & " + " & ".join(esc(c) for _, c in cols) + r" \\", r"\midrule"]
    lines = list(head)
    for ck in suite.checkpoints:
        lines.append(esc(ck.name) + " & " + " & ".join(esc(_fmt(by[(ck.name, t, c)])) for t, c in cols) + r" \\")
    refs = _references(suite, rows)
    marks = _ref_notes(refs)
    if refs:
        lines.append(r"\midrule")
        for ref in refs:
            lines.append(esc(f"{ref['name']} (published)") + " & "
                         + " & ".join(esc(_ref_cell(ref, k, marks)) for k in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {esc(m)} {esc(n)}" for n, m in marks.items()]
    if suite.baseline:  # the differences, with their 95% confidence intervals
        lines += ["", f"% difference to {esc(suite.baseline)}: mean over seeds [95% CI]; (0 in CI): not significant", *head]
        for ck in suite.checkpoints:
            if ck.name != suite.baseline:
                lines.append(esc(ck.name) + " & " + " & ".join(esc(ci_text(by[(ck.name, t, c)])) for t, c in cols) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _pretrain_cell(suite: Suite, ckpt, seed: int | None) -> str:
    """"done (N steps) | <final loss>", "FAILED: <error> | –", "finished with other inputs | –" or
    "not finished | –" for a config row's pretraining."""
    folder = suite.pretrain_dir(ckpt, seed)
    status = suite.pretrain_state(ckpt, seed)[0]
    if status == "stale":
        return "finished with other inputs (rerun the suite) | –"
    if status == "done":
        s = json.loads((folder / "pretrain_summary.json").read_text())
        return f"done ({s['steps']} steps) | {s['loss_last']:.4f}"
    if status == "failed":
        return f"FAILED: {json.loads((folder / 'failed.json').read_text()).get('error', '')} | –"
    return "not finished | –"


def write_report(suite: Suite) -> Path:
    """report.md, results.csv, results.tex, figures/<task>.png under the suite's output; returns report.md."""
    out = suite.output
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(suite)
    cells = _cells(suite)
    cols = _columns(suite)
    by = {(r["checkpoint"], r["task"], r["metric"]): r for r in rows}

    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "checkpoint", "method", "epochs", "data", "task", "metric", "mean", "std", "n", "protocol", "delta",
                    "delta_ci_low", "delta_ci_high", "delta_n", "delta_ci", "ci_contains_0", "source"])
        num = lambda v: "" if v is None else f"{v:.4f}"
        for r in rows:
            w.writerow(["measured", r["checkpoint"], r["method"], r["epochs"], r["data"], r["task"], r["metric"],
                        num(r["mean"]), num(r["std"]), r["n"], "+".join(r["protocols"]), num(r.get("delta")),
                        num(r.get("delta_low")), num(r.get("delta_high")), r.get("delta_n") or "", r.get("delta_kind") or "",
                        "" if r.get("delta_contains_zero") is None else str(r["delta_contains_zero"]).lower(), "this suite"])
        for ref in _references(suite, rows):
            for (task, metric), v in ref["values"].items():
                w.writerow(["published", ref["name"], "", "", "IN-1k", task, metric, v, "", "",
                            ref.get("notes", {}).get((task, metric), ref["protocol"]), "", "", "", "", "", "", ref["source"]])
    (out / "results.tex").write_text(_latex(suite, rows))
    figures = _figures(suite, rows, out / "figures")

    md = [f"# Benchmark report: {suite.name}", "",
          f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}; {len(suite.seeds)} seed(s) per cell "
          f"({', '.join(map(str, suite.seeds))}); mean ± sample std over seeds"
          + (f"; (±x.xx) = difference to **{suite.baseline}**." if suite.baseline else "."), "",
          "| checkpoint | method | epochs | data | " + " | ".join(_header(suite, rows, t, c) for t, c in cols) + " |",
          "|---|---|---|---|" + "---|" * len(cols)]
    for ck in suite.checkpoints:
        md.append(f"| {ck.name} | {ck.method} | {ck.epochs or ''} | {ck.data} | "
                  + " | ".join(_fmt(by[(ck.name, t, c)]) for t, c in cols) + " |")
    if suite.baseline:
        kinds = {r["delta_kind"] for r in rows if r.get("delta_kind")}
        md += ["", f"## Differences to {suite.baseline} (mean over seeds, 95% confidence interval)", "",
               "| checkpoint | " + " | ".join(_header(suite, rows, t, c) for t, c in cols) + " |", "|---|" + "---|" * len(cols)]
        md += [f"| {ck.name} | " + " | ".join(ci_text(by[(ck.name, t, c)]) for t, c in cols) + " |"
               for ck in suite.checkpoints if ck.name != suite.baseline]
        md += ["", "Student-t intervals: " + "; ".join(
            text for kind, text in (("paired", "paired by seed over the seeds both rows have (t with n − 1 degrees of freedom)"),
                                    ("unpaired", "unpaired where fewer than two seeds match (Welch)"),
                                    ("none", "one seed: the difference alone, no interval can be given")) if kind in kinds)
               + ". (0 in CI): the interval contains 0, the difference is not significant at 5%."]
    pre = [(ck, ps) for ck in suite.checkpoints for ps in suite.pretrainings(ck)]
    if pre:
        md += ["", "## Pretraining (rows given as configs)", "", "| row | config | overrides | seed | status | final loss |",
               "|---|---|---|---|---|---|"]
        for ck, ps in pre:
            md.append(f"| {ck.name} | `{Path(ck.config).name}` | {' '.join(f'`{o}`' for o in ck.overrides) or '–'} | "
                      f"{'config' if ps is None else ps} | {_pretrain_cell(suite, ck, ps)} |")
        if suite.pretrain.overrides:
            md += ["", "Every row also: " + " ".join(f"`{o}`" for o in suite.pretrain.overrides)]
    used = sorted({p for r in rows for p in r["protocols"]})
    md += ["", "Protocols: " + "; ".join(
        f"{_title(t)}: {', '.join(sorted({n for r in rows if r['task'] == t for n in r['protocol_names']})) or '–'}" for t in suite.tasks)]
    if "non-standard" in used:
        md.append("† non-standard protocol (fewer GPUs, another batch or schedule; each cell's metrics.json lists the changes): "
                  "not comparable with published numbers.")
    if "paper" in used:
        md.append("§ the paper's protocol (Zhang & Ma, CVPR 2022), not the community standard: compare only with rows "
                  "of the same protocol.")
    if "demo" in used:
        md.append("‡ demo protocol (small backbone, synthetic data, short schedule): shows the pipeline works, "
                  "not comparable with published numbers.")
    refs = _references(suite, rows)
    if refs:
        md += ["", "## Published reference rows (ResNet-50, ImageNet-1k pretraining)", "",
               "| row | source | protocol | " + " | ".join(_header(suite, rows, t, c) for t, c in cols) + " |",
               "|---|---|---|" + "---|" * len(cols)]
        marks = _ref_notes(refs)
        for ref in refs:
            md.append(f"| {ref['name']} | {ref['source']} | {ref['protocol']} | "
                      + " | ".join(_ref_cell(ref, k, marks) for k in cols) + " |")
        md += ([""] + [f"{m} {n}" for n, m in marks.items()]) if marks else []
    if figures:
        md += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figures]
    md += invariance_section(suite, cells, out / "figures")[0]
    failed = [(k, f) for k, e in cells.items() for f in e["failed"]]
    skipped = [(k, s) for k, e in cells.items() for s in e["skipped"]]
    stale = [(k, s) for k, e in cells.items() for s in e["stale"]]
    n_done = sum(len(e["metrics"]) for e in cells.values())
    md += ["", "## Cells", "", f"{n_done} finished, {len(failed)} failed, {len(skipped)} skipped, "
           + (f"{len(stale)} finished with other inputs (not shown; rerun the suite), " if stale else "")
           + f"{len(suite.cells()) - n_done - len(failed) - len(skipped) - len(stale)} not run; folders under `{out / 'cells'}`."]
    for (ck, task), st in stale:
        md.append(f"- other inputs {ck} / {task} / seed {st['seed']}: {'; '.join(st['differences'][:3])}")
    for (ck, task), f in failed:
        md.append(f"- FAILED {ck} / {task} / seed {f['seed']}: {f['error']} (see `{suite.output / 'cells'}/.../failed.json`)")
    for (ck, task), s in skipped:
        md.append(f"- skipped {ck} / {task} / seed {s['seed']}: {s['reason']}")
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n")
    return report
