"""The result of a detection run: detectron2's evaluator output as metrics.json (`transfer.result`)."""
from __future__ import annotations

import json
from pathlib import Path

from ..common import finite_or_none
from ..result import write_result
from ..tasks import TASKS

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def write_metrics(cfg, info: dict, results: dict, report: dict | None, classes: list[str], resumed: bool,
                  run: dict | None = None) -> None:
    """metrics.json (`transfer.result`): `bbox` (and `segm`) summary APs as metrics; per-class APs, the run state."""
    task = info["task"]
    out = Path(cfg.OUTPUT_DIR)
    if report is None and (out / "load_report.json").is_file():
        report = json.loads((out / "load_report.json").read_text())
    missing = [k for k in TASKS[task].metric_groups if k not in results]
    if missing:
        raise RuntimeError(f"evaluation returned no {missing} results (got {list(results)})")
    summary = {kind: {k: finite_or_none(float(v)) for k, v in r.items() if k in SUMMARY_KEYS} for kind, r in results.items()}
    per_class = {kind: {k[3:]: finite_or_none(float(v)) for k, v in r.items() if k.startswith("AP-")} for kind, r in results.items()}
    write_result(out, task, weights=info["weights"], seed=cfg.SEED, protocol=info["protocol"], changes=info["changes"],
                 protocol_name=cfg.HIERAUG.PROTOCOL_NAME, metrics=summary, load_report=report, started=info["started"],
                 config=info["config"], source=info["source"], iterations=cfg.SOLVER.MAX_ITER, batch_size=cfg.SOLVER.IMS_PER_BATCH,
                 eval_only=info["eval_only"], resumed=resumed, equivalent_changes=info["equivalent_changes"], run=run or {},
                 per_class_AP=per_class, classes=classes, boxes=info.get("boxes"))
    line = "  ".join(f"{kind} " + " ".join(f"{k} {v:.2f}" for k, v in list(s.items())[:3] if v is not None) for kind, s in summary.items())
    print(f"[{task}] {line}  -> {out / 'metrics.json'}")
