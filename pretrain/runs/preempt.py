"""Preemption: the scheduler's warning signal becomes a checkpoint and a clean exit instead of lost work.

SLURM sends SIGTERM (or the signal of `sbatch --signal`, e.g. USR1; submitit's is USR2) some time before it
kills a job. Inside `Preemption()` those signals only set a flag; a training loop reads it at its next
logging step (agreeing on it with every process), writes its checkpoint, says so and raises `Preempted`.
The entry point then exits with `EXIT_PREEMPTED` (75, sysexits' "temporary failure, retry"): the same
command resumes from the checkpoint, by itself where the job is requeued (`sbatch --requeue`, or the
benchmark runner's submitit jobs, which requeue on this code).
"""
from __future__ import annotations

import logging
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
EXIT_PREEMPTED = 75
log = logging.getLogger("pretrain")


class Preempted(Exception):
    """A run stopped for a signal after writing its checkpoint; rerunning the command resumes it."""

    def __init__(self, signum: int, where: str):
        self.signum = signum
        super().__init__(f"{signal.Signals(signum).name} received: stopped after writing {where}; "
                         "rerun the same command to resume from it (a requeued job does so by itself)")


class _Caught:
    """Inside `with`: SIGTERM/SIGUSR1/SIGUSR2 call `self._on(signum)` instead of ending the process; the previous
    handlers come back on exit. Outside the main thread (signals cannot be caught there) it does nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _on(self, signum: int) -> None:
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
            outer = getattr(self._previous[signal.SIGTERM], "__self__", None)
            if isinstance(outer, _Caught) and outer.signum is not None:  # nested: a signal that came before counts
                self._on(outer.signum)
        return self

    def _handle(self, signum, frame) -> None:
        self._on(signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


class Preemption(_Caught):
    """`with Preemption() as p:` a preemption signal sets `p.signum`; the loop stops at its next check."""

    def _on(self, signum: int) -> None:
        if self.signum is None:
            log.warning("%s received: finishing this step, then writing a checkpoint and exiting",
                        signal.Signals(signum).name)
        self.signum = signum


class Forwarding(_Caught):
    """`with Forwarding(proc) as f:` a preemption signal sent to this process goes on to the child `proc` (a run
    that checkpoints on it) instead of ending this one; `f.signum` says which came."""

    def __init__(self, proc) -> None:
        super().__init__()
        self.proc = proc

    def _on(self, signum: int) -> None:
        self.signum = signum
        if self.proc.poll() is None:
            self.proc.send_signal(signum)


def agreed_signal(signum: int | None) -> int | None:
    """The preemption signal any process received (None: none did), the same answer on every process: one
    all-reduce where a process group of several exists (on the GPU under NCCL), none otherwise."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return signum
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    got = torch.tensor([float(signum == s) for s in SIGNALS], device=device)
    dist.all_reduce(got)
    return next((s for s, n in zip(SIGNALS, got.tolist()) if n > 0), None)
