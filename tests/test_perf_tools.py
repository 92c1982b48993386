"""The performance tools a user runs on their own node: the loader benchmark reports, per config and
`augment.device`, throughputs and the verdict that follows from them."""
import json

import pytest

from benchmarks.perf import loader_bench


@pytest.mark.slow
def test_loader_bench_reports_both_modes_and_a_consistent_verdict(demo_world, tmp_path):
    out = tmp_path / "lb.json"
    rc = loader_bench.main(["--data", str(demo_world / "imagefolder/train"), "--workers", "1", "--batch", "8", "--steps", "2",
                            "--arch", "resnet18", "--size", "32", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())["results"]
    assert sorted(res) == ["baseline/loader", "baseline/train", "method/loader", "method/train"]
    for key, r in res.items():
        assert r["views_per_image"] == (8 if key.startswith("method") else 2)
        assert 0 <= r["wait_fraction"] <= 1 and r["training_images_per_second"] > 0
        slower = r["loader_images_per_second"] < r["step_images_per_second"]
        assert r["verdict"] == ("data-bound" if slower else "compute-bound"), r
