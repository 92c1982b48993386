"""The result contract (transfer/result.py): one schema for every runner, and a declared metric that a
runner does not report stops the write instead of leaving a hole in the report."""
import json

import pytest

from transfer.result import HEADER, SCHEMA, write_result
from transfer.tasks import TASKS


def _write(tmp_path, task, metrics, **details):
    return write_result(tmp_path, task, weights="w.pth", seed=1, protocol="demo", protocol_name="p", changes=["a -> b"],
                        metrics=metrics, load_report=None, started=0.0, **details)


def test_the_record_has_the_header_and_the_task_table_reads_its_metrics(tmp_path):
    rec = _write(tmp_path, "voc_det", {"bbox": {"AP": 41.5, "AP50": 70.25, "AP75": None}}, classes=["cat"])
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(rec)) and on_disk["schema"] == SCHEMA and set(HEADER) <= set(on_disk)
    assert on_disk["protocol_changes"] == ["a -> b"] and on_disk["classes"] == ["cat"] and on_disk["timing"]["seconds"] > 0
    assert on_disk["versions"]["torch"] and on_disk["versions"]["python"].count(".") == 2
    task = TASKS["voc_det"]
    assert [task.metric(on_disk, c) for c, _ in task.columns] == [70.25, 41.5, None]


@pytest.mark.parametrize("task,metrics,key", [("voc_det", {"bbox": {"AP": 1.0, "AP75": 1.0}}, "bbox.AP50"),
                                              ("coco_instseg", {"bbox": {"AP": 1.0}}, "segm.AP"),
                                              ("knn", {"top5": 90.0}, "top1"),
                                              ("invariance", {"matrix": {"layer4": {}}}, "matrix.layer4.gray.mean")])
def test_a_declared_metric_that_is_missing_stops_the_write(tmp_path, task, metrics, key):
    with pytest.raises(ValueError, match=f"reported no '{key}'"):
        _write(tmp_path, task, metrics)
    assert not (tmp_path / "metrics.json").exists()


def test_a_metric_must_be_a_number_and_details_cannot_hide_the_header(tmp_path):
    with pytest.raises(ValueError, match="a number or None"):
        _write(tmp_path, "knn", {"top1": "61.2"})
    with pytest.raises(ValueError, match=r"\['versions'\] would hide"):
        _write(tmp_path, "knn", {"top1": 61.2}, versions={})
