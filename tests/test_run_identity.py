"""A result never belongs to other inputs: run folders record their identity (run.json) and a later command
into the same folder resumes, says "already finished" (touching nothing) or stops naming the differences;
numbers are checked where they enter; bad files and folders get a sentence, not a traceback.
Each test reproduces one case of the issue on reused folders and wrong input (the numbers in the names)."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from pretrain.config.config import ConfigError, load_config

from .conftest import ROOT, run_tool

DEMO = "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml"
HIER = "configs/pretrain/simsiam-hier_resnet18_1xb64-coslr-4e_demo.yaml"


def _call(main, *args):
    """(exit code, stdout, stderr) of an entry point's main() run in this process (SystemExit caught)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(*args)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_images(demo_world, tmp_path_factory):
    """An ImageFolder of 2 classes x 4 demo images: with batch 8, one pretraining epoch is one step."""
    root = tmp_path_factory.mktemp("tiny") / "train"
    for cls in sorted(p.name for p in (demo_world / "imagefolder/train").iterdir())[:2]:
        (root / cls).mkdir(parents=True)
        for img in sorted((demo_world / "imagefolder/train" / cls).iterdir())[:4]:
            (root / cls / img.name).symlink_to(img)
    return root


def _pretrain(config, data, out, *overrides):
    from pretrain.train import main

    return _call(main, [str(ROOT / config), f"data.train={data}", f"train.output={out}", "data.workers=0", "optim.batch_size=8",
                        "optim.epochs=1", "augment.size=32", *overrides])


# ---- 2: pretraining into a reused folder -----------------------------------------------------------------------------

def test_2_a_finished_pretraining_is_left_as_it_is_and_other_inputs_are_refused(tiny_images, tmp_path):
    out = tmp_path / "run"
    rc, _, err = _pretrain(DEMO, tiny_images, out)
    assert rc == 0, err[-2000:]
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "finished" and rec["identity"]["optim"]["epochs"] == 1
    kept = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}
    rc, stdout, _ = _pretrain(DEMO, tiny_images, out)  # the same command: nothing to do, nothing rewritten
    assert rc == 0 and "already finished" in stdout
    rc, _, err = _pretrain(DEMO, tiny_images, out, "optim.epochs=5", "optim.lr=0.5")  # other hyperparameters
    assert rc == 1 and "optim.epochs: 1 -> 5" in err and "optim.lr: 0.4 -> 0.5" in err and "--overwrite" in err, err
    rc, _, err = _pretrain(HIER, tiny_images, out)  # the method's config into the baseline's folder
    assert rc == 1 and "hier.enabled: false -> true" in err and "Traceback" not in err, err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()} == kept
    rc, _, err = _pretrain(DEMO, tiny_images, out, "optim.epochs=2", "--overwrite")  # explicitly starting over
    assert rc == 0, err[-2000:]
    assert json.loads((out / "pretrain_summary.json").read_text())["total_steps"] == 2


def test_2_settings_may_change_between_a_run_and_its_resume(tiny_images, tmp_path):
    out = tmp_path / "run"
    rc, _, err = _pretrain(DEMO, tiny_images, out, "optim.epochs=2", "train.max_steps=1")  # a smoke run, stopped early
    assert rc == 0 and json.loads((out / "run.json").read_text())["status"] == "running", err[-2000:]
    rc, _, err = _pretrain(DEMO, tiny_images, out, "optim.epochs=2", "train.log_every=1")  # the rest of it, other logging
    assert rc == 0, err[-2000:]
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "finished" and [e["event"] for e in rec["history"]] == ["start", "resume"]
    assert rec["history"][1]["settings_changed"] == ["train.log_every: 5 -> 1", "train.max_steps: 1 -> 0"]


def test_2_a_folder_holding_a_run_without_a_record_is_not_resumed_blindly(tiny_images, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "hier-aug-pretrain"}, out / "last.pth")  # a run of unknown inputs (e.g. older code)
    rc, _, err = _pretrain(DEMO, tiny_images, out)
    assert rc == 1 and "without a run.json" in err and "train.output=DIR" in err, err


# ---- 8 and 10: pretraining numbers and files at the door ------------------------------------------------------------

@pytest.mark.parametrize("override,needle", [
    ("optim.epochs=-1", "optim.epochs=-1 is out of range: must be an integer >= 1"),
    ("augment.size=0", "augment.size=0 is out of range: must be an integer >= 16"),
    ("optim.batch_size=0", "optim.batch_size=0 is out of range: must be an integer >= 1"),
    ("optim.epochs=2.5", "optim.epochs=2.5 is out of range: must be an integer >= 1"),
    ("augment.gray_p=1.5", "augment.gray_p=1.5 is out of range"),
    ("augment.crop_scale=[0.5,0.2]", "augment.crop_scale=[0.5, 0.2] is out of range"),
    ("method.temperature=0", "method.temperature=0 is out of range: must be a number > 0"),
])
def test_8_pretraining_numbers_are_checked_where_they_enter(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_config(ROOT / DEMO, [override])


def test_10_config_files_that_are_not_a_mapping_are_named(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    (tmp_path / "list.yaml").write_text("- optim\n- lr\n")
    with pytest.raises(ConfigError, match="holds a YAML list; its top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_10_pretraining_stops_with_a_sentence_for_a_missing_gpu_an_unwritable_folder_and_an_empty_class(
        tiny_images, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, _, err = _pretrain(DEMO, tiny_images, tmp_path / "a", "train.device=cuda")
    assert rc == 1 and "train.device=cuda but no GPU is visible" in err and "Traceback" not in err, err
    (tmp_path / "file").write_text("")
    rc, _, err = _pretrain(DEMO, tiny_images, tmp_path / "file/run")
    assert rc == 1 and "error:" in err and str(tmp_path / "file") in err and "Traceback" not in err, err
    data = tmp_path / "data"
    (data / "empty").mkdir(parents=True)
    (data / "full").symlink_to(next(tiny_images.iterdir()))
    rc, _, err = _pretrain(DEMO, data, tmp_path / "b")
    assert rc == 1 and "empty" in err and "Every class folder needs at least one image" in err, err


def test_10_ctrl_c_exits_130_with_one_line(tiny_images, tmp_path):
    cmd = [sys.executable, "-m", "pretrain.train", str(ROOT / DEMO), f"data.train={tiny_images}", f"train.output={tmp_path / 'r'}",
           "data.workers=0", "optim.batch_size=8", "optim.epochs=10000", "augment.size=32"]
    # a shell's background job (`make test &`, nohup in a script) ignores SIGINT and its children inherit that:
    # the command would then rightly ignore Ctrl-C, so the child gets the terminal's default back
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not (tmp_path / "r/log.jsonl").exists():  # the loop has started
        assert proc.poll() is None and time.time() - t0 < 120
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted (Ctrl-C)" in err and "Traceback" not in err, err[-2000:]


# ---- 5, 6, 7, 8, 9: transfer tasks refuse wrong combinations and numbers before anything runs -------------------------

@pytest.mark.parametrize("args,needle", [
    (["--k", "0"], "argument --k: 0 is out of range: must be an integer >= 1"),
    (["--temperature", "0"], "argument --temperature: 0 is out of range: must be a number > 0"),
    (["--size", "0"], "argument --size: 0 is out of range"),
    (["--dataset", "imagenett"], "argument --dataset: invalid choice: 'imagenett'"),
])
def test_6_8_knn_options_are_checked(args, needle):
    from transfer.classification.run import main

    rc, _, err = _call(main, "knn", ["--weights", "random", "--data", "x", *args])
    assert rc == 2 and needle in err, err


@pytest.mark.parametrize("task,args,needle", [
    ("linear_cls", ["--preset", "mocoo"], "argument --preset: invalid choice: 'mocoo'"),
    ("linear_cls", ["--epochs", "-1"], "argument --epochs: -1 is out of range"),
    ("colour_probe", ["--pairs", "0"], "argument --pairs: 0 is out of range"),
])
def test_6_8_probe_options_are_checked(task, args, needle):
    from transfer.classification.run import main

    rc, _, err = _call(main, task, ["--weights", "random", "--data", "x", *args])
    assert rc == 2 and needle in err, err


def test_6_the_fast_probe_applies_epochs_and_lr_and_records_them(demo_world, tmp_path):
    from transfer.classification.run import main

    rc, _, err = _call(main, "linear_cls", ["--weights", "random", "--arch", "resnet18", "--data", str(demo_world / "imagefolder"),
                                            "--size", "32", "--workers", "0", "--fast", "--epochs", "3", "--lr", "0.05",
                                            "--output", str(tmp_path / "run")])
    assert rc == 0, err[-2000:]
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert m["epochs"] == 3 and m["preset_values"]["lr"] == 0.05 and m["protocol"] == "non-standard"
    assert "fast probe epochs 100 -> 3" in m["protocol_changes"] and "fast probe lr 0.1 -> 0.05" in m["protocol_changes"]


def test_11_the_feature_cache_lives_in_the_run_folder_and_a_broken_one_is_recomputed(demo_world, tmp_path):
    from transfer.classification.run import main

    args = ["--weights", "random", "--arch", "resnet18", "--data", str(demo_world / "imagefolder"), "--dataset", "demo",
            "--size", "32", "--workers", "0", "--k", "5"]
    rc, _, err = _call(main, "knn", [*args, "--output", str(tmp_path / "a")])
    assert rc == 0, err[-2000:]
    caches = sorted((tmp_path / "a/feature_cache").glob("feats_*.pt"))
    assert len(caches) == 2 and not (tmp_path / ".feature_cache").exists()
    top1 = json.loads((tmp_path / "a/metrics.json").read_text())["metrics"]["top1"]
    caches[0].write_bytes(caches[0].read_bytes()[:100])  # truncated, as a killed non-atomic write would leave it
    rc, out, err = _call(main, "knn", [*args, "--output", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "a/feature_cache")])
    assert rc == 0 and "unreadable or incomplete cache; recomputing it" in out, err[-2000:]
    assert json.loads((tmp_path / "b/metrics.json").read_text())["metrics"]["top1"] == top1
    torch.load(caches[0], weights_only=True)  # replaced by a complete file


def test_10_classification_names_an_empty_class_folder_and_an_unwritable_output(demo_world, tmp_path):
    from transfer.classification.run import main

    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "empty").mkdir(parents=True)
        (data / split / "full").symlink_to(demo_world / "imagefolder" / split / "aeroplane")
    rc, _, err = _call(main, "knn", ["--weights", "random", "--arch", "resnet18", "--data", str(data), "--k", "1",
                                     "--size", "32", "--workers", "0", "--output", str(tmp_path / "run")])
    assert rc == 1 and f"{data / 'train'}" in err and "Every class folder needs at least one image" in err, err
    (tmp_path / "file").write_text("")
    rc, _, err = _call(main, "knn", ["--weights", "random", "--arch", "resnet18", "--data", str(demo_world / "imagefolder"),
                                     "--k", "1", "--size", "32", "--workers", "0", "--output", str(tmp_path / "file/run")])
    assert rc == 1 and "cannot write to the output folder" in err and "Traceback" not in err, err


def test_1_a_probe_rerun_with_other_weights_is_refused_and_the_same_one_is_already_finished(demo_world, tmp_path):
    from torchvision import models

    from transfer.classification.run import main

    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "a.pth")
    args = ["--data", str(demo_world / "imagefolder"), "--size", "32", "--workers", "0", "--k", "5", "--output", str(tmp_path / "r")]
    assert _call(main, "knn", ["--weights", str(tmp_path / "a.pth"), *args])[0] == 0
    kept = (tmp_path / "r/metrics.json").read_bytes()
    rc, out, _ = _call(main, "knn", ["--weights", str(tmp_path / "a.pth"), *args])
    assert rc == 0 and "already finished" in out
    rc, _, err = _call(main, "knn", ["--weights", "random", "--arch", "resnet18", *args])
    assert rc == 1 and f"weights: {tmp_path / 'a.pth'} (sha256" in err and '-> "random"' in err, err
    assert (tmp_path / "r/metrics.json").read_bytes() == kept


def test_9_empty_folder_and_detectron2_pkl_checkpoints_are_named(tmp_path):
    import pickle

    from transfer.weights import CheckpointError, extract_backbone

    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        extract_backbone(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="is a folder; give the checkpoint file inside it"):
        extract_backbone(tmp_path)
    with open(tmp_path / "w.pkl", "wb") as f:
        pickle.dump({"model": {"stem.conv1.weight": __import__("numpy").zeros(2)}, "__author__": "hier-aug"}, f)
    with pytest.raises(CheckpointError, match="a detectron2 .pkl .*detection tasks take it as --weights directly"):
        extract_backbone(tmp_path / "w.pkl")


@pytest.mark.parametrize("tool", ["tools/convert_to_d2.py", "tools/extract_backbone.py"])
def test_9_the_conversion_tools_explain_an_empty_checkpoint(tool, tmp_path):
    import importlib.util

    (tmp_path / "empty.pth").write_bytes(b"")
    spec = importlib.util.spec_from_file_location("tool", ROOT / tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc, _, err = _call(mod.main, [str(tmp_path / "empty.pth"), str(tmp_path / "out.pkl")])
    assert rc == 1 and "the file is empty (0 bytes)" in err and "Traceback" not in err, err


# ---- 12: files are written with the umask's permissions -----------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_12_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    from pretrain.runs.files import save_atomic, write_json

    old = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        save_atomic({"w": torch.zeros(1)}, tmp_path / "c.pth")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == mode and (tmp_path / "c.pth").stat().st_mode & 0o777 == mode


# ---- 13: tools that delete or read a folder check what it is ---------------------------------------------------------------

def test_13_make_demo_data_overwrites_only_a_demo_world(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("mdd", ROOT / "tools/make_demo_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/thesis.tex").write_text("years of work")
    rc, _, err = _call(mod.main, [str(tmp_path / "mine"), "--overwrite", "--scale", "0.05", "--parts", "imagefolder"])
    assert rc == 2 and "no demo world (no world.json)" in err and (tmp_path / "mine/thesis.tex").read_text() == "years of work"
    assert _call(mod.main, [str(tmp_path / "w"), "--scale", "0.05", "--parts", "imagefolder"])[0] == 0
    (tmp_path / "w/stale.txt").write_text("")
    assert _call(mod.main, [str(tmp_path / "w"), "--overwrite", "--scale", "0.05", "--parts", "imagefolder"])[0] == 0
    assert (tmp_path / "w/world.json").is_file() and not (tmp_path / "w/stale.txt").exists()
    for args, needle in ((["--scene-size", "1000"], "--scene-size: 1000 is out of range"), (["--scale", "0"], "--scale: 0 is out of range")):
        rc, _, err = _call(mod.main, [str(tmp_path / "z"), *args])
        assert rc == 2 and needle in err, err


def test_13_check_data_says_when_the_root_is_one_level_off(demo_world):
    from transfer.datacheck import items

    with pytest.raises(ValueError, match=f"looks like one split; pass its parent {demo_world / 'imagefolder'}"):
        items("cls", demo_world / "imagefolder/train")
    with pytest.raises(ValueError, match=f"pass {demo_world / 'imagefolder/train'}"):
        items("pretrain", demo_world / "imagefolder")
    assert len(items("cls", demo_world / "imagefolder")[0]) == len(items("pretrain", demo_world / "imagefolder/train")[0]) \
        + len(items("pretrain", demo_world / "imagefolder/val")[0])


# ---- 3: the benchmark runner's cells key on the same identity ---------------------------------------------------------------

def test_3_a_suite_row_whose_checkpoint_changed_is_run_again_and_never_reported_from_old_weights(demo_world, tmp_path):
    from torchvision import models

    from benchmarks.report import write_report
    from benchmarks.run import main
    from benchmarks.suite import load_suite

    torch.manual_seed(0)
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "a.pth")
    torch.manual_seed(1)
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "b.pth")
    doc = {"name": "s", "output": str(tmp_path / "bench"), "references": False, "seeds": [0],
           "checkpoints": [{"name": "row", "path": str(tmp_path / "a.pth")}],
           "tasks": {"knn": ["--data", str(demo_world / "imagefolder"), "--dataset", "demo", "--size", "32", "--workers", "0",
                             "--k", "5"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert _call(main, [str(tmp_path / "s.yaml")])[0] == 0
    cell = tmp_path / "bench/cells/row/knn/s0"
    assert json.loads((cell / "metrics.json").read_text())["weights"] == str(tmp_path / "a.pth")
    rc, out, _ = _call(main, [str(tmp_path / "s.yaml")])
    assert rc == 0 and "1 finished, 0 to run" in out  # unchanged: kept
    doc["checkpoints"][0]["path"] = str(tmp_path / "b.pth")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    report = write_report(load_suite(tmp_path / "s.yaml")).read_text()  # before rerunning: the old cell is not shown
    assert "0 finished" in report and "1 finished with other inputs" in report and "a.pth" in report
    rc, out, _ = _call(main, [str(tmp_path / "s.yaml")])
    assert rc == 0 and "finished with other inputs than the suite now gives; running it again" in out, out
    assert json.loads((cell / "metrics.json").read_text())["weights"] == str(tmp_path / "b.pth")
    (tmp_path / "b.pth").write_bytes((tmp_path / "a.pth").read_bytes())  # same path, other content: also a new input
    rc, out, _ = _call(main, [str(tmp_path / "s.yaml"), "--dry-run"])
    assert "finished with other inputs" in out and f"args.--weights[0]: {tmp_path / 'b.pth'} (sha256" in out, out


# ---- 1, 4, 5, 7, 8, 9: detection ---------------------------------------------------------------------------------------------

def _voc(world, out, weights, *extra):
    return ["--weights", str(weights), "--config", "demo_voc_R_18_FPN", "--data-root", str(world), "--output", str(out), *extra]


@pytest.mark.detectron2
@pytest.mark.parametrize("task,config,needle", [
    ("voc_det", "demo_coco_R_18_FPN", "a preset for coco_det or coco_instseg, not voc_det; pass --config with a voc_det preset"),
    ("coco_instseg", "demo_voc_R_18_FPN", "a preset for voc_det, not coco_instseg"),
])
def test_5_a_detection_preset_for_another_task_is_refused(demo_world, tmp_path, task, config, needle):
    from transfer.detectron2.train_net import main

    rc, _, err = _call(main, task, ["--weights", "random", "--config", config, "--data-root", str(demo_world),
                                    "--output", str(tmp_path / "r")])
    assert rc == 1 and needle in err and not (tmp_path / "r/run.json").exists(), err


@pytest.mark.detectron2
@pytest.mark.parametrize("opts,needle", [
    (["SOLVERR.MAX_ITER", "10"], "override SOLVERR.MAX_ITER: SOLVERR is not a section of the detectron2 config; sections: "),
    (["SOLVER.MAX_ITERR", "10"], "override SOLVER.MAX_ITERR: no key 'MAX_ITERR' in SOLVER; its keys: AMP, BASE_LR"),
    (["SOLVER.MAX_ITER"], "config overrides come as KEY VALUE pairs; 'SOLVER.MAX_ITER' has no value"),
    (["SOLVER.MAX_ITER", "-1"], "SOLVER.MAX_ITER=-1 is out of range: must be an integer >= 1"),
    (["SOLVER.BASE_LR", "0.0"], "SOLVER.BASE_LR=0.0 is out of range: must be > 0"),
])
def test_7_8_detection_overrides_name_unknown_keys_and_bad_numbers(demo_world, tmp_path, opts, needle):
    from transfer.detectron2.train_net import main

    rc, _, err = _call(main, "voc_det", _voc(demo_world, tmp_path / "r", "random", *opts))
    assert rc == 1 and needle in err and "Traceback" not in err, err


@pytest.mark.detectron2
def test_9_a_missing_pkl_is_named_before_detectron2_reads_it(demo_world, tmp_path):
    from transfer.detectron2.train_net import main

    rc, _, err = _call(main, "voc_det", _voc(demo_world, tmp_path / "r", tmp_path / "gone.pkl"))
    assert rc == 1 and f"{tmp_path / 'gone.pkl'}: no such file" in err, err


@pytest.fixture(scope="module")
def voc_run(demo_world, tmp_path_factory):
    """A finished 4-iteration detection run from torchvision weights (checkpoints at iterations 2 and 4)."""
    from torchvision import models

    folder = tmp_path_factory.mktemp("voc_run")
    torch.save(models.resnet18(weights=None).state_dict(), folder / "tv.pth")
    args = _voc(demo_world, folder / "run", folder / "tv.pth", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
                "TEST.PRECISE_BN.ENABLED", "False")
    r = run_tool("tools/run_transfer.py", "--task", "voc_det", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return folder, args


@pytest.mark.slow
@pytest.mark.detectron2
def test_1_detection_rerun_with_other_weights_or_preset_is_refused_and_evaluates_nothing(voc_run, demo_world):
    folder, args = voc_run
    run = folder / "run"
    kept = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    other = _voc(demo_world, run, "random", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.PRECISE_BN.ENABLED", "False")
    for extra in ([], ["--eval-only"]):
        r = run_tool("tools/run_transfer.py", "--task", "voc_det", *extra, *other)
        assert r.returncode == 1 and f"weights: {folder / 'tv.pth'} (sha256" in r.stderr and "--overwrite" in r.stderr, r.stderr[-2000:]
    r = run_tool("tools/run_transfer.py", "--task", "voc_det", *args[:-6], "SOLVER.MAX_ITER", "6")  # another schedule
    assert r.returncode == 1 and "config.SOLVER.MAX_ITER: 4 -> 6" in r.stderr, r.stderr[-2000:]
    r = run_tool("tools/run_transfer.py", "--task", "voc_det", *args)  # the same inputs: finished, nothing to do
    assert r.returncode == 0 and "already finished" in r.stdout, r.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()} == kept


@pytest.mark.slow
@pytest.mark.detectron2
def test_4_eval_only_says_which_checkpoint_and_labels_an_unfinished_run(voc_run):
    folder, args = voc_run
    run = folder / "run"
    r = run_tool("tools/run_transfer.py", "--task", "voc_det", "--eval-only", *args)
    assert r.returncode == 0 and f"evaluating the finished run: {run / 'model_final.pth'}" in r.stdout, r.stderr[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["run"] == {"evaluated": str(run / "model_final.pth"), "iteration": 4, "max_iter": 4, "finished": True}
    # what a run killed after its first checkpoint leaves: the tag on model_0000001.pth, the record still running
    (run / "last_checkpoint").write_text("model_0000001.pth")
    rec = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(dict(rec, status="running")))
    r = run_tool("tools/run_transfer.py", "--task", "voc_det", "--eval-only", *args)
    assert r.returncode == 0 and "an UNFINISHED run (iteration 2 of 4)" in r.stdout, r.stdout[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["run"]["finished"] is False and m["run"]["iteration"] == 2 and m["eval_only"]
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # evaluating does not finish a run


# ---- 1, 4, 5, 7, 8: segmentation -------------------------------------------------------------------------------------------

def _seg(world, out, weights, *extra):
    return ["--weights", str(weights), "--config", "demo_fcn_r18-d8_voc-192", "--data-root", str(world / "VOC2012"),
            "--output", str(out), *extra]


@pytest.mark.mmseg
@pytest.mark.parametrize("args,needle", [
    (["--config", "demo_fcn_r18-d8_cityscapes-192"], "reads CityscapesDataset: a preset for cityscapes_seg, not voc_seg"),
    (["--cfg-options", "train_cfgg.max_iters=10"], "--cfg-options train_cfgg.max_iters: no key 'train_cfgg' in the config"),
    (["--cfg-options", "train_cfg.max_iterss=10"], "no key 'max_iterss' in train_cfg, which holds max_iters, type, val_interval"),
    (["--cfg-options", "train_cfg.max_iters=-1"], "train_cfg.max_iters=-1 is out of range: must be an integer >= 1"),
])
def test_5_7_8_segmentation_presets_overrides_and_numbers_are_checked(demo_world, tmp_path, args, needle):
    from transfer.segmentation.run import main

    rc, _, err = _call(main, "voc_seg", _seg(demo_world, tmp_path / "r", "random", *args))
    assert rc == 1 and needle in err and not (tmp_path / "r/run.json").exists(), err


@pytest.mark.slow
@pytest.mark.mmseg
def test_1_4_segmentation_rerun_keeps_its_backbone_and_eval_only_labels_an_unfinished_run(demo_world, tmp_path):
    from torchvision import models

    torch.manual_seed(0)
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "a.pth")
    torch.manual_seed(1)
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "b.pth")
    opts = ["--cfg-options", "train_cfg.max_iters=4", "train_cfg.val_interval=4", "default_hooks.checkpoint.interval=2"]
    run = tmp_path / "run"
    r = run_tool("tools/run_transfer.py", "--task", "voc_seg", *_seg(demo_world, run, tmp_path / "a.pth", *opts))
    assert r.returncode == 0, r.stderr[-3000:]
    backbone = (run / "backbone.pth").read_bytes()
    for extra in ([], ["--eval-only"]):
        r = run_tool("tools/run_transfer.py", "--task", "voc_seg", *extra, *_seg(demo_world, run, tmp_path / "b.pth", *opts))
        assert r.returncode == 1 and f"weights: {tmp_path / 'a.pth'} (sha256" in r.stderr, r.stderr[-2000:]
    assert (run / "backbone.pth").read_bytes() == backbone
    (run / "last_checkpoint").write_text(str(run / "iter_2.pth"))  # as a run killed after its first checkpoint leaves it
    rec = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(dict(rec, status="running")))
    r = run_tool("tools/run_transfer.py", "--task", "voc_seg", "--eval-only", *_seg(demo_world, run, tmp_path / "a.pth", *opts))
    assert r.returncode == 0 and f"an UNFINISHED run (iteration 2 of 4): {run / 'iter_2.pth'}" in r.stdout, r.stdout[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["run"] == {"iteration": 2, "max_iter": 4, "finished": False, "evaluated": str(run / "iter_2.pth")}


@pytest.mark.detectron2
@pytest.mark.mmseg
@pytest.mark.parametrize("task", ["voc_det", "voc_seg"])
def test_10_an_unwritable_output_folder_is_named_by_detection_and_segmentation(demo_world, tmp_path, task):
    from transfer.detectron2.train_net import main as det
    from transfer.segmentation.run import main as seg

    (tmp_path / "file").write_text("")
    main, args = (det, _voc(demo_world, tmp_path / "file/run", "random")) if task == "voc_det" else \
        (seg, _seg(demo_world, tmp_path / "file/run", "random"))
    rc, _, err = _call(main, task, args)
    assert rc == 1 and "cannot write to the output folder" in err and "Traceback" not in err, err


def test_a_missing_file_matches_only_a_record_of_its_own_path(tmp_path):
    """A checkpoint deleted after its run finished still matches that run (same path), but not a run recorded
    with another file: that is another input, named with both paths."""
    from pretrain.runs.folder import differences, file_fingerprint

    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"weights a")
    recorded = {"weights": file_fingerprint(a)}
    a.unlink()
    assert differences(recorded, {"weights": file_fingerprint(a)}) == []
    diff = differences(recorded, {"weights": file_fingerprint(b)})
    assert len(diff) == 1 and str(a) in diff[0] and str(b) in diff[0] and "missing" in diff[0]


# The config keys that may differ between a run and its resume, each with why it cannot change a result; written
# by hand: every other key is identity (a rerun with another value must stop, not resume).
HAND_SETTINGS = {
    "name": "the preset's file name; its content is identity",
    "train.output": "where the run is written",
    "train.device": "cpu/cuda: the same computation (parity tested by the GPU check)",
    "train.ckpt_every_steps": "when checkpoints are written",
    "train.ckpt_every_minutes": "when checkpoints are written",
    "train.keep_every_epochs": "which checkpoints are kept",
    "train.log_every": "how often losses are logged",
    "train.max_steps": "where this invocation stops; the schedule is optim.epochs'",
    "data.workers": "loader processes; augmentations are seeded per (seed, epoch, image)",
    "data.max_bad_fraction": "when to stop for unreadable images; the images used are the same",
    "method.batching": "how views are batched: equal in all modes (test_fidelity)",
    "augment.device": "where the photometric step runs: equal paths (test_augment)",
    "train.tf32_matmul": "GPU arithmetic mode", "train.tf32_conv": "GPU arithmetic mode",
    "train.cudnn_benchmark": "GPU kernel choice",
}


def test_the_settings_are_the_hand_written_ones():
    from pretrain.config.config import SETTINGS

    assert sorted(SETTINGS) == sorted(HAND_SETTINGS)


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _changed(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "_other"
    if isinstance(v, list):
        return [*v, v[-1]] if v else [1]
    return "something"


@pytest.mark.parametrize("key", [k for k, _ in _leaves(__import__("pretrain.config.config", fromlist=["DEFAULTS"]).DEFAULTS)])
def test_every_config_key_is_identity_or_a_setting_with_a_reason(key, tmp_path):
    """Changing one key alone: a setting changes only the settings; any other key changes the identity (so a
    rerun with another seed, lr, augmentation... stops instead of resuming the old run)."""
    import copy

    from pretrain.config.config import identity, load_config

    cfg = load_config(None, ["data.train=/data/x"])
    other = copy.deepcopy(cfg)
    *parents, leaf = key.split(".")
    node = other
    for p in parents:
        node = node[p]
    node[leaf] = _changed(node[leaf])
    if key == "data.class_list":  # a file of class names
        (tmp_path / "classes.txt").write_text("n01440764\n")
        node[leaf] = str(tmp_path / "classes.txt")
    (ident_a, set_a), (ident_b, set_b) = identity(cfg), identity(other)
    if key in HAND_SETTINGS:
        assert ident_a == ident_b and set_a != set_b, key
    else:
        assert ident_a != ident_b, f"{key} changes a result but is not identity"
