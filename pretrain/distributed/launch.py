"""Joining the process group: torchrun's environment, SLURM's (host lists expanded, no scontrol needed), or one process."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


class LaunchError(RuntimeError):
    """A process started in a way that cannot form the process group it describes; the message says how to launch."""


def slurm_port() -> str:
    """A rendezvous port per SLURM job (29500 + job id mod 1000): two jobs sharing a node do not collide."""
    return str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000)


def expand_hostlist(nodes: str) -> list[str]:
    """SLURM's compressed host list as host names, in order, as `scontrol show hostnames` gives them:
    "gpu[01-03,07],cpu5" -> gpu01 gpu02 gpu03 gpu07 cpu5; ranges keep their zero padding; several bracket
    groups in one name multiply ("r[1-2]n[01-02]" -> r1n01 r1n02 r2n01 r2n02)."""
    hosts, name, depth = [], "", 0
    for ch in nodes.strip() + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            if name:
                hosts += _expand_one(name)
            name = ""
        else:
            name += ch
    return hosts


def _expand_one(name: str) -> list[str]:
    if "[" not in name:
        return [name]
    head, rest = name.split("[", 1)
    group, tail = rest.split("]", 1)
    values = []
    for part in group.split(","):
        lo, _, hi = part.partition("-")
        if not hi:
            values.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"SLURM host list {name!r}: range {part} runs backwards")
        values += [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    return [head + v + t for v in values for t in _expand_one(tail)]


def _slurm_env() -> dict[str, str] | None:
    """torchrun-style variables derived from SLURM's (one task per GPU under srun: the step's task count is the
    world size); None outside SLURM, under torchrun, or for a batch script's single task."""
    if "SLURM_PROCID" not in os.environ or "RANK" in os.environ:
        return None
    if "SLURM_STEP_NUM_TASKS" not in os.environ:  # the batch script itself, not a task that srun started
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            raise LaunchError(
                f"this job has SLURM_NTASKS={os.environ['SLURM_NTASKS']} tasks, but this process was started by the batch script, "
                "not by srun, so the other tasks never come: launch it with `srun python -m pretrain.train ...` (one task per "
                "GPU), or run `tools/pretrain.sh CONFIG NUM_GPUS` (torchrun) in the script instead")
        return None
    env = {"RANK": os.environ["SLURM_PROCID"], "WORLD_SIZE": os.environ["SLURM_STEP_NUM_TASKS"],
           "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0")}
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_JOB_NODELIST", os.environ.get("SLURM_NODELIST", "127.0.0.1"))
        try:
            host = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                  check=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):  # no scontrol (containers): expand the list here
            host = expand_hostlist(nodes)[0]
        env["MASTER_ADDR"] = host
    env.setdefault("MASTER_PORT", os.environ.get("MASTER_PORT", slurm_port()))
    return env


def cuda_device(local_rank: int) -> torch.device:
    """The GPU of a process with this local rank: `local_rank` modulo the visible GPUs, so that a task that sees
    one GPU (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per task) uses it whatever its SLURM_LOCALID."""
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def slurm_as_torchrun() -> bool:
    """Under srun, write SLURM's variables as torchrun's (`_slurm_env`), LOCAL_RANK being the index of a GPU this
    task sees (`cuda_device`: 0 under --gpus-per-task=1), for code and engines that read torchrun's (mmengine's
    `pytorch` launcher). False when this process is not an srun task of several."""
    env = _slurm_env()
    if env is None:
        return False
    if torch.cuda.is_available():
        env["LOCAL_RANK"] = str(cuda_device(int(env["LOCAL_RANK"])).index)
    os.environ.update(env)
    return True


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's or SLURM's environment, or run alone. The backend
    follows the training device (`device_type`): NCCL for "cuda", gloo otherwise, whatever GPUs are visible."""
    slurm = _slurm_env()
    if slurm:
        os.environ.update(slurm)
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(cuda_device(info.local_rank))
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)
    return info
