"""Runs that survive a cluster (issue 34, items 1 and 3): a preemption signal becomes a checkpoint at the next
logging step and exit 75, a rerun resumes there; a checkpoint is written on a time interval; one process's
signal or unreadable images stop every process at the same step with the same message."""
import json
import os
import signal
import time
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain.config.config import load_config
from pretrain.distributed.launch import DistInfo
from pretrain.engine import trainer as engine
from pretrain.runs.preempt import EXIT_PREEMPTED, Preempted, agreed_signal

from .conftest import ROOT
from .test_distributed import _free_port, _join_gloo
from .test_pretrain_run import TINY, _small_folder

SIMSIAM = ROOT / "configs/pretrain/simsiam_resnet18_1xb64-coslr-4e_demo.yaml"


def _overrides(data, out, *extra):
    return [*TINY, "optim.batch_size=4", "data.workers=0", f"data.train={data}", f"train.output={out}",
            "train.log_every=2", "train.ckpt_every_minutes=0", *extra]


def _signal_at(monkeypatch, step_no: int, signum=signal.SIGUSR1, rank=None):
    """Send `signum` to this process right after its `step_no`-th optimisation step."""
    step = engine.Pretrainer.step

    def signalled(self, views, params):
        out = step(self, views, params)
        if self.global_step == step_no and rank in (None, self.info.rank):
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(engine.Pretrainer, "step", signalled)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_checkpoints_at_the_next_logging_step_exits_75_and_the_rerun_resumes(demo_world, tmp_path, monkeypatch,
                                                                                      capsys, signum):
    """24 images, batch 4: 6 steps an epoch, run to step 6. The signal after step 3 (no checkpoint due before the
    epoch end) stops the run at step 4, the next logging step, with last.pth at step 4; the rerun goes 4 -> 6."""
    from pretrain.train import main

    data = _small_folder(demo_world, tmp_path / "data", 12)
    out = tmp_path / "run"
    args = [str(SIMSIAM), *_overrides(data, out, "optim.epochs=1")]
    _signal_at(monkeypatch, 3, signum)
    assert main(args) == EXIT_PREEMPTED
    err = capsys.readouterr().err
    assert f"preempted: {signal.Signals(signum).name} received: stopped after writing {out / 'last.pth'} at step 4" in err
    assert torch.load(out / "last.pth", weights_only=True)["global_step"] == 4
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"event": "preempted", "step": 4, "signal": int(signum)} in events
    assert signal.getsignal(signum) is signal.SIG_DFL  # the default handler is back once the run has stopped
    monkeypatch.undo()
    assert main(args) == 0
    steps = [e["step"] for e in (json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()) if "loss" in e]
    assert steps == [2, 4, 6]  # each step logged once: the rerun started at 5
    assert json.loads((out / "pretrain_summary.json").read_text())["steps_this_run"] == 2


@pytest.mark.parametrize("minutes,saved", [(0, [6]), (1e-9, [2, 4, 6])])
def test_a_checkpoint_is_written_when_its_time_interval_has_passed(demo_world, tmp_path, monkeypatch, minutes, saved):
    """train.ckpt_every_minutes: a checkpoint at the first logging step after the interval (1e-9 min: every one);
    0: only at the epoch end. 24 images, batch 4: the epoch ends at step 6."""
    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = engine.Pretrainer(load_config(SIMSIAM, _overrides(data, tmp_path / "run", "optim.epochs=1",
                                                          f"train.ckpt_every_minutes={minutes}")))
    steps, save = [], t.save
    monkeypatch.setattr(t, "save", lambda: (steps.append(t.global_step), save()))
    t.run()
    assert steps == saved


def test_the_checkpoint_interval_is_counted_in_minutes(demo_world, tmp_path, monkeypatch):
    """train.ckpt_every_minutes=1 on a clock that moves 25 s per step (flushes at steps 2, 4, 6): 50 s at step 2 (not
    due), 100 s at step 4 (due: saved, the interval restarts), 50 s since at step 6 (not due; the epoch end saves)."""
    data = _small_folder(demo_world, tmp_path / "data", 12)
    clock = [0.0]
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    t = engine.Pretrainer(load_config(SIMSIAM, _overrides(data, tmp_path / "run", "optim.epochs=1",
                                                          "train.ckpt_every_minutes=1")))
    steps, save, step = [], t.save, t.step
    monkeypatch.setattr(t, "save", lambda: (steps.append(t.global_step), save()))
    monkeypatch.setattr(t, "step", lambda *a: (clock.__setitem__(0, clock[0] + 25.0), step(*a))[1])
    t.run()
    assert steps == [4, 6]


def test_the_unreadable_budget_counts_every_process_and_stops_one_past_it(demo_world, tmp_path):
    """20 images, max_bad_fraction 0.1: 2 unreadable images allowed in the whole run (whatever the process count),
    the same file met again is counted once, the third stops the run. The count is made at the flush."""
    data = _small_folder(demo_world, tmp_path / "data", 10)
    t = engine.Pretrainer(load_config(SIMSIAM, _overrides(data, tmp_path / "run", "data.max_bad_fraction=0.1")))
    assert len(t.dataset) == 20
    t.note_unreadable(["bad0.jpg", "bad1.jpg"])
    t.note_unreadable(["bad0.jpg"])
    t.flush(None, None, _Bar())
    t.note_unreadable(["bad1.jpg"])  # met again after the flush: still two
    t.flush(None, None, _Bar())
    assert list(t.bad_images) == ["bad0.jpg", "bad1.jpg"]
    t.note_unreadable(["bad2.jpg"])
    with pytest.raises(RuntimeError, match=r"3 unreadable images .* exceed data.max_bad_fraction=0.1 of 20 images"):
        t.flush(None, None, _Bar())


class _Bar:
    def set_postfix(self, **kw):
        pass


def _worker(rank, world, port, data, out, mode, queue):
    """`signal`: only rank 1 gets SIGUSR1, after step 3. `unreadable`: rank 0 meets one unreadable image, rank 1
    two; `within`: one each (12 images, max_bad_fraction 0.2: 2 allowed in all, whatever the process count)."""
    _join_gloo(rank, world, port, 30)
    cfg = load_config(SIMSIAM, _overrides(data, out, "optim.batch_size=4", "data.max_bad_fraction=0.2",
                                          "train.max_steps=6" if mode == "signal" else "train.max_steps=3"))
    t = engine.Pretrainer(cfg, DistInfo(rank, world, rank))
    if mode == "signal":
        step = t.step

        def signalled(views, params):
            res = step(views, params)
            if t.global_step == 3 and rank == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
            return res

        t.step = signalled
    else:
        batches = t.batches

        def with_bad(loader):
            for views, params, idx, _ in batches(loader):
                yield views, params, idx, [f"r{rank}_{i}.jpg" for i in range(rank + 1 if mode == "unreadable" else 1)]

        t.batches = with_bad
    try:
        t.run()
        queue.put((rank, "finished"))
    except Preempted as e:
        queue.put((rank, f"{e} | step {t.global_step}"))
    except Exception as e:  # a hang ends in gloo's timeout: reported as such
        queue.put((rank, f"{type(e).__name__}: {e}"))


def _agree_worker(rank, world, port, cases, out):
    _join_gloo(rank, world, port, 60)
    got = [agreed_signal(case[rank]) for case in cases]
    dist.destroy_process_group()
    (out / f"{rank}.json").write_text(json.dumps([None if g is None else int(g) for g in got]))


def test_two_processes_agree_on_the_signal_either_received(tmp_path):
    """The transfer engines' agreement (`agreed_signal`) on two gloo processes: what either process received, the
    same on both; of two different signals the first of SIGTERM, SIGUSR1, SIGUSR2; none when neither received one."""
    term, usr1, usr2 = int(signal.SIGTERM), int(signal.SIGUSR1), int(signal.SIGUSR2)
    cases = [(None, None), (usr1, None), (None, term), (usr2, term), (usr2, usr2)]
    want = [None, usr1, term, term, usr2]
    mp.spawn(_agree_worker, args=(2, _free_port(), cases, tmp_path), nprocs=2, join=True)
    assert [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)] == [want, want]
    assert agreed_signal(usr1) == usr1 and agreed_signal(None) is None  # one process: its own


@pytest.mark.slow
@pytest.mark.parametrize("mode,expect", [("signal", "SIGUSR1 received: stopped after writing"),
                                         ("unreadable", "3 unreadable images (e.g. r0_0.jpg) exceed"),
                                         ("within", "finished")])
def test_one_process_s_signal_or_bad_images_stop_every_process_at_the_same_step(demo_world, tmp_path, mode, expect):
    data = _small_folder(demo_world, tmp_path / "data", 6)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_worker, args=(2, _free_port(), str(data), str(tmp_path / "run"), mode, queue), nprocs=2,
                       join=True, start_method="spawn")
    got = dict(queue.get(timeout=5) for _ in range(2))
    assert got[0] == got[1], got
    assert expect in got[0], got


def test_a_signal_that_came_before_a_nested_preemption_still_counts():
    """detectron2's one-process launch runs the trainer inside the entry point's own `Preemption`: a signal met
    before training started (the inner one) must still stop the run."""
    from pretrain.runs.preempt import Preemption

    with Preemption() as outer:
        os.kill(os.getpid(), signal.SIGUSR1)
        with Preemption() as inner:
            assert inner.signum == signal.SIGUSR1
        os.kill(os.getpid(), signal.SIGTERM)
        assert outer.signum == signal.SIGTERM  # the outer handler is back once the inner one is done
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_the_run_at_the_flush_that_reads_it(demo_world, tmp_path, monkeypatch, bad):
    """The fast twin of the two-process NaN test: one process, the real step log; the loss of step 3 becomes
    NaN / inf: the flush at step 4 stops the run naming step 3, and no checkpoint holds a step past 2."""
    from pretrain.methods.base import HierSiamese

    forward = HierSiamese.forward
    calls = [0]

    def poisoned(self, views, params):
        loss, logs = forward(self, views, params)
        calls[0] += 1
        return (loss * bad, logs) if calls[0] == 3 else (loss, logs)

    monkeypatch.setattr(HierSiamese, "forward", poisoned)
    data = _small_folder(demo_world, tmp_path / "data", 12)
    t = engine.Pretrainer(load_config(SIMSIAM, _overrides(data, tmp_path / "run", "optim.epochs=1",
                                                          "train.ckpt_every_steps=2")))
    with pytest.raises(engine.NonFiniteLossError, match=r"loss is -?(nan|inf) at step 3 "):  # SimSiam's loss is negative
        t.run()
    assert torch.load(tmp_path / "run/last.pth", weights_only=True)["global_step"] == 2
