"""The task table's facts (transfer/tasks.py) against a hand-written table and the shipped presets they name,
and the runners' shared start (`transfer.common.start_state`) on real run folders."""
import pytest

from pretrain.config.shipped import configs_dir
from transfer.common import run_folder, start_state
from transfer.tasks import TASKS

# task -> (default preset, data layout, mmseg dataset type, metric groups its evaluation must return), by hand
HAND = {
    "knn": (None, "cls", None, ("top1",)),
    "linear_cls": (None, "cls", None, ("top1",)),
    "colour_probe": (None, "cls", None, ("top1",)),
    "invariance": (None, "cls", None, ("matrix",)),
    "voc_det": ("pascal_voc_R_50_C4_24k_moco", "voc", None, ("bbox",)),
    "coco_det": ("coco_R_50_C4_1x_moco", "coco", None, ("bbox",)),
    "coco_instseg": ("coco_R_50_C4_1x_moco", "coco", None, ("bbox", "segm")),
    "voc_seg": ("fcn_r50-d8_4xb4-20k_voc12aug-512x512", "voc_masks", "PascalVOCDataset", ("mIoU",)),
    "cityscapes_seg": ("fcn_r50-d8_4xb2-40k_cityscapes-769x769", "cityscapes", "CityscapesDataset", ("mIoU",)),
}


def test_the_task_table_is_the_hand_written_one():
    got = {t.name: (t.preset, t.data, t.dataset_type, t.metric_groups) for t in TASKS.values()}
    assert got == HAND


@pytest.mark.detectron2
@pytest.mark.parametrize("task", [t for t in HAND if TASKS[t].engine == "detectron2"])
def test_each_detection_default_preset_reads_its_task_data(task):
    """The shipped default preset, merged by detectron2 (its _BASE_ chain), trains and tests on datasets of the
    task's layout (detectron2 names voc_* / coco_*); the coco presets predict masks (coco_instseg needs them)."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.set_new_allowed(True)
    cfg.merge_from_file(str(configs_dir() / "transfer/detectron2" / f"{TASKS[task].preset}.yaml"))
    names = [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
    assert names and all(n.startswith(HAND[task][1] + "_") for n in names), names
    assert cfg.MODEL.MASK_ON is (HAND[task][1] == "coco")


@pytest.mark.mmseg
@pytest.mark.parametrize("task", [t for t in HAND if TASKS[t].engine == "mmseg"])
def test_each_segmentation_default_preset_reads_its_dataset_type(task):
    from mmengine.config import Config

    from transfer.segmentation.protocol import datasets_of

    cfg = Config.fromfile(str(configs_dir() / "transfer/mmseg" / f"{TASKS[task].preset}.py"))
    assert {ds["type"] for ds in datasets_of(cfg)} == {HAND[task][2]}


def _finished(folder, ident):
    folder.open(ident, {})
    (folder.path / "metrics.json").write_text("{}")
    folder.finish()


def test_start_state_of_the_three_runners(tmp_path, capsys):
    """new -> "new"; a finished run: None and one line with the runner's ways out (with and without --eval-only),
    but --eval-only evaluates it again ("finished" returned); --eval-only on an empty folder: detection evaluates
    --weights as they are (the identity says so), segmentation stops naming the folder."""
    ident = {"task": "knn", "seed": 0}
    folder = run_folder(tmp_path / "a", "knn")
    assert start_state(folder, dict(ident), "knn", overwrite=False) == "new"
    _finished(folder, ident)
    assert start_state(folder, dict(ident), "knn", overwrite=False) is None
    said = capsys.readouterr().out
    assert said == (f"[knn] {folder.path}: already finished with these inputs ({folder.path / 'metrics.json'}); nothing to do "
                    "(--overwrite runs it again)\n")
    assert start_state(folder, dict(ident), "knn", overwrite=True) == "new"
    assert start_state(folder, dict(ident), "voc_seg", overwrite=False, eval_only=False) is None
    assert "(--eval-only evaluates it again, --overwrite runs it again)" in capsys.readouterr().out
    assert start_state(folder, dict(ident), "voc_seg", overwrite=False, eval_only=False, speak=False) is None
    assert capsys.readouterr().out == ""
    assert start_state(folder, dict(ident), "voc_seg", overwrite=False, eval_only=True) == "finished"

    empty = run_folder(tmp_path / "b", "voc_det")
    d2 = dict(ident)
    assert start_state(empty, d2, "voc_det", overwrite=False, eval_only=True, eval_weights=True) == "new"
    assert d2["mode"] == "evaluation of --weights without fine-tuning"
    with pytest.raises(FileNotFoundError, match=f"--eval-only: {tmp_path / 'b'} holds no run to evaluate"):
        start_state(empty, dict(ident), "voc_seg", overwrite=False, eval_only=True)


@pytest.mark.parametrize("task", [pytest.param(t, marks=getattr(pytest.mark, TASKS[t].engine)) for t in HAND if TASKS[t].engine])
def test_each_engine_runner_defaults_to_its_tasks_preset(task):
    """`run_transfer.py --task T` without --config trains the preset of the hand table."""
    import importlib

    parser = importlib.import_module(TASKS[task].runner).get_args_parser(task)
    assert parser.get_default("config") == HAND[task][0]
