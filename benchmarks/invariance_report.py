"""The invariance-map section of a suite report (for every column of the `invariance` task): per row the
stage x augmentation map averaged over seeds, and per row its difference to the baseline row, cell by cell,
with the suite's 95% interval over seeds (`stats.difference`: paired by seed where seeds match).

Writes figures/<column>_<row>.png (the mean map), figures/<column>_<row>_diff.png (the difference map,
`*` where the interval excludes 0) and invariance.json (both, with the per-seed values they come from).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from transfer.tasks import task_of

from .stats import difference


def columns(suite) -> list[str]:
    return [t for t in suite.tasks if task_of(t) == "invariance"]


def seed_maps(cells: dict, row: str, column: str) -> dict[int, dict]:
    """{seed: stage x augmentation matrix} of the finished cells of (row, column)."""
    return {m["seed"]: m["metrics"]["matrix"] for m in cells[(row, column)]["metrics"]}


def mean_map(maps: dict[int, dict]) -> dict:
    """{layer: {augmentation: {"mean", "seeds": {seed: value}}}}: the mean over seeds of each cell's mean."""
    first = next(iter(maps.values()))
    return {layer: {aug: {"mean": statistics.fmean(m[layer][aug]["mean"] for m in maps.values()),
                          "seeds": {s: m[layer][aug]["mean"] for s, m in maps.items()}} for aug in first[layer]}
            for layer in first}


def difference_map(row: dict[int, dict], base: dict[int, dict]) -> dict:
    """{layer: {augmentation: {"mean" (= delta), "low", "high", "n", "kind", "contains_zero"}}} of row - base."""
    first = next(iter(row.values()))
    out = {}
    for layer in first:
        out[layer] = {}
        for aug in first[layer]:
            d = difference({s: m[layer][aug]["mean"] for s, m in row.items()}, {s: m[layer][aug]["mean"] for s, m in base.items()})
            out[layer][aug] = {"mean": d["delta"], **{k: d[k] for k in ("low", "high", "n", "kind", "contains_zero")}}
    return out


def _cell(d: dict) -> str:
    if d["low"] is None:
        return f"{d['mean']:+.3f}"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" + ("" if d["contains_zero"] else " *")


def section(suite, cells: dict, folder: Path) -> tuple[list[str], list[Path]]:
    """(Markdown lines, figure paths) of the section; writes the figures and <output>/invariance.json."""
    from transfer.classification.invariance import plot

    md, figures, data = [], [], {}
    for column in columns(suite):
        maps = {ck.name: seed_maps(cells, ck.name, column) for ck in suite.checkpoints}
        maps = {name: m for name, m in maps.items() if m}
        if not maps:
            continue
        slug = {ck.name: ck.slug for ck in suite.checkpoints}
        name = column.replace("@", "_")
        md += ["", f"## Invariance map ({column})", "",
               "Per stage and augmentation type: (pos − neg) / (1 − neg) of pooled-feature cosine similarities (README, "
               "\"Invariance map\"); 1 = fully invariant, 0 = no more similar than another image."]
        data[column] = {"mean": {}, "difference": {}}
        for row, m in maps.items():
            data[column]["mean"][row] = mean_map(m)
            path = folder / f"{name}_{slug[row]}.png"
            plot(data[column]["mean"][row], path, f"{column}: {row} (mean over {len(m)} seed(s))")
            figures.append(path)
        base = maps.get(suite.baseline) if suite.baseline else None
        for row, m in maps.items():
            if base is None or row == suite.baseline:
                continue
            diff = difference_map(m, base)
            data[column]["difference"][row] = diff
            path = folder / f"{name}_{slug[row]}_diff.png"
            plot(diff, path, f"{column}: {row} − {suite.baseline} (mean over seeds; * = 95% CI excludes 0)", diff=True)
            figures.append(path)
            augs = list(next(iter(diff.values())))
            md += ["", f"{row} − {suite.baseline}: difference [95% CI over seeds]; * = the interval excludes 0", "",
                   "| stage | " + " | ".join(augs) + " |", "|---|" + "---|" * len(augs)]
            md += [f"| {layer} | " + " | ".join(_cell(diff[layer][a]) for a in augs) + " |" for layer in diff]
        md += ["", *[f"![{p.stem}](figures/{p.name})" for p in figures if p.stem.startswith(name + "_")]]
    if data:
        (suite.output / "invariance.json").write_text(json.dumps(data, indent=1) + "\n")
    return md, figures
