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


@pytest.mark.slow
def test_gpu_check_runs_dry_on_the_cpu_and_every_section_reports(tmp_path):
    """`python -m benchmarks.perf.gpu_check --dry` (what CI can run): every section measures or says why not;
    the equalities it checks hold on the CPU (augmentation paths, batching modes, 2 processes vs 1)."""
    from benchmarks.perf import gpu_check

    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--dry", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["dry"] is True and list(r["sections"]) == list(gpu_check.SECTIONS)
    errors = {k: v["error"] for k, v in r["sections"].items() if "error" in v}
    assert not errors, errors
    s = r["sections"]
    assert len(s["throughput"]) == 8 + 1 and all(v["images_per_s"] > 0 for k, v in s["throughput"].items() if k != "seconds")
    assert s["augment_parity"]["ok"] and s["augment_parity"]["max_abs_diff"] < 1e-5
    assert s["batching_equal"]["ok"] and s["two_process"]["ok"], (s["batching_equal"], s["two_process"])
    assert set(s["host_syncs"]["per_step"]) == {"photometric.py:index_plan"}  # only the index lists, built on the host
    assert 1 < s["flop_ratio"]["flop_ratio"] < 5 and s["flop_ratio"]["time_ratio"] > 0


def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(capsys, monkeypatch):
    import torch

    from benchmarks.perf import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2 and "--dry" in capsys.readouterr().err
