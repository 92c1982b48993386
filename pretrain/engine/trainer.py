"""The pretraining loop: DDP, AMP, cosine schedule, atomic checkpoints, exact resume, NaN guard.

Resume restores model (online, target, queues), optimizer, AMP scaler, step counter (the
schedule is a function of it), RNG states and the data position (epoch, batch within epoch);
augmentations are seeded per (seed, epoch, image), so a resumed run sees the same views.
The hot loop never waits for the device: losses stay there until a logging or checkpoint step
(`step_log`), the photometric index lists are built on the host (`photometric.index_plan`).
At those steps every process also agrees on what happened anywhere: unreadable images (one budget over all
processes), a preemption signal (checkpoint, then `Preempted`), a time-interval checkpoint being due.
"""
from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pretrain.data.loader import build_loader, shm_guarded, shm_need
from pretrain.data.sampler import ResumableSampler
from pretrain.distributed.collectives import all_processes
from pretrain.distributed.launch import DistInfo
from pretrain.distributed.syncbn import convert_sync_batchnorm
from pretrain.engine.build import build_dataset, build_device_augment, build_model
from pretrain.engine.checkpoint import resume_training, training_state
from pretrain.engine.optim import build_optimizer, ema_momentum, lr_at, scaled_lr, schedule_step, set_lr
from pretrain.engine.outputs import output_dir, run_folder
from pretrain.engine.runtime import resolve_runtime
from pretrain.engine.step_log import StepLog
from pretrain.models.viewbn import make_per_view
from pretrain.runs.files import replace_atomically, save_atomic, write_json
from pretrain.runs.preempt import SIGNALS, Preempted, Preemption

log = logging.getLogger("pretrain")


class NonFiniteLossError(FloatingPointError):
    pass


class Pretrainer:
    """Builds everything from a config; `run()` trains to the end of the schedule."""

    def __init__(self, cfg: dict, info: DistInfo = DistInfo()):
        self.cfg, self.info = cfg, info
        t = cfg["train"]
        self.out = output_dir(cfg)
        self.runtime = resolve_runtime(cfg, info)
        self.runtime.apply()
        self.device = self.runtime.device
        torch.manual_seed(t["seed"])
        resolved = self.runtime.resolved_config(cfg)  # the builders read the resolved values, not `auto`
        model = build_model(resolved, self.device.type).to(self.device)
        if info.enabled and t["sync_bn"]:
            model = make_per_view(convert_sync_batchnorm(model, self.device))
        self.model = model
        self.ddp = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                           broadcast_buffers=False) if info.enabled else None
        o = cfg["optim"]
        if o["batch_size"] % info.world_size:
            raise ValueError(f"optim.batch_size={o['batch_size']} is not divisible by {info.world_size} processes")
        self.per_rank = o["batch_size"] // info.world_size
        self.dataset = build_dataset(resolved, self.device.type)
        self.device_augment = build_device_augment(resolved, self.device.type)
        self.sampler = ResumableSampler(len(self.dataset), self.per_rank, info.rank, info.world_size, t["seed"])
        self.steps_per_epoch = self.sampler.num_batches
        self.total_steps = o["epochs"] * self.steps_per_epoch
        self.warmup_steps = round(o["warmup_epochs"] * self.steps_per_epoch)
        self.base_lr = scaled_lr(cfg)
        self.optimizer = build_optimizer(model, cfg, self.base_lr, info.world_size)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.runtime.amp_dtype == torch.float16)
        self.global_step = 0
        self.history: list[dict] = []  # one record per step (step, epoch, lr, loss, loss/stageS), filled at flushes
        self.step_log = StepLog()
        self.bad_images: dict[str, int] = {}  # unreadable image -> the step it was first met, all processes' (kept in checkpoints)
        self.new_bad: list[str] = []  # this process's unreadable images since the last flush
        self.preemption = Preemption()
        self.last_save = time.monotonic()

    # ---- checkpoints (`checkpoint.training_state` / `checkpoint.resume_training`) -------------------
    def state(self) -> dict:
        return training_state(self)

    def save(self) -> None:
        self.last_save = time.monotonic()
        if not self.info.is_main:
            return
        state = self.state()
        save_atomic(state, self.out / "last.pth")
        keep = self.cfg["train"]["keep_every_epochs"]
        if keep and self.global_step % self.steps_per_epoch == 0 and (self.global_step // self.steps_per_epoch) % keep == 0:
            save_atomic(state, self.out / f"epoch_{self.global_step // self.steps_per_epoch:04d}.pth")

    def maybe_resume(self) -> bool:
        return resume_training(self)

    # ---- data ----------------------------------------------------------------------------------
    def make_loader(self) -> DataLoader:
        """The run's one DataLoader (`loader.build_loader`)."""
        return build_loader(self.dataset, self.sampler, self.per_rank, self.cfg["data"]["workers"], self.device,
                            self._shm_bytes())

    def _shm_bytes(self) -> int:
        """`shm_need` of this run: its per-process batch, its views (uint8 when augment.device is train), its workers."""
        sizes = [self.cfg["augment"]["size"]] * (2 * len(self.model.stages))
        return shm_need(self.per_rank, sizes, self.device_augment is not None, self.cfg["data"]["workers"])

    def batches(self, loader: DataLoader):
        """Iterate `loader`; a worker killed for want of shared memory becomes an error naming /dev/shm."""
        return shm_guarded(loader, self._shm_bytes())

    def note_unreadable(self, paths: list[str]) -> None:
        """Note the images the loader replaced on this process (named once); counted over all processes at the
        next flush (`count_unreadable`)."""
        for path in paths:
            if path not in self.bad_images and path not in self.new_bad:
                self.new_bad.append(path)
                log.warning("unreadable image skipped (replaced by another sample): %s", path)

    def count_unreadable(self, paths: list[str], jsonl) -> None:
        """Add every process's new unreadable images (`paths`, the same list on every process) to the run's; stop
        every process with the same message once they exceed `data.max_bad_fraction` of the dataset."""
        for path in paths:
            if path in self.bad_images:
                continue
            self.bad_images[path] = self.global_step
            if jsonl:
                jsonl.write(json.dumps({"event": "unreadable_image", "path": path, "step": self.global_step}) + "\n")
                jsonl.flush()
        fraction = self.cfg["data"]["max_bad_fraction"]
        if len(self.bad_images) > fraction * len(self.dataset):
            raise RuntimeError(
                f"{len(self.bad_images)} unreadable images (e.g. {next(iter(self.bad_images))}) exceed data.max_bad_fraction="
                f"{fraction} of {len(self.dataset)} images in {self.cfg['data']['train']} (counted over "
                f"{self.info.world_size} process(es)). Check the path and the mount; list every bad file with "
                f"`tools/check_data.py {self.cfg['data']['train']}`; remove or replace them, or raise "
                "data.max_bad_fraction. Rerun to resume.")

    # ---- training ----------------------------------------------------------------------------
    def step(self, views, params) -> tuple[float, dict[str, torch.Tensor]]:
        """One optimisation step on host batches -> (lr, {"loss": ..., "loss/stageS": ...} as device scalars);
        nothing here waits for the device."""
        o = self.cfg["optim"]
        at = schedule_step(self.global_step, self.steps_per_epoch, self.warmup_steps, o["schedule_unit"])
        lr = lr_at(at, self.total_steps, self.warmup_steps, self.base_lr, o["min_lr"] * self.base_lr / o["lr"])
        set_lr(self.optimizer, lr, self.base_lr, o["fix_pred_lr"])
        if self.device_augment is not None:
            views = self.device_augment(views, params, self.device)
        else:
            views = [v.to(self.device, non_blocking=True) for v in views]
        params = [p.to(self.device, non_blocking=True) for p in params]
        amp = self.runtime.amp_dtype
        ctx = torch.autocast("cuda", dtype=amp) if amp else nullcontext()
        with ctx:
            loss, logs = (self.ddp or self.model)(views, params)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        m = self.cfg["method"]
        self.model.update_target(ema_momentum(m["momentum"], m["momentum_schedule"], self.global_step, self.total_steps))
        self.global_step += 1
        return lr, {"loss": loss.detach(), **logs}

    def flush(self, writer, jsonl, bar) -> tuple[bool, bool]:
        """Read the pending steps' losses back and sum the processes' counts (`StepLog.flush`, the same on every
        process); stop every process on a non-finite loss or too many unreadable images; log the losses.
        Returns (the signal any process received or None, a checkpoint is due by time), agreed by every process."""
        minutes = self.cfg["train"]["ckpt_every_minutes"]
        due = bool(minutes) and time.monotonic() - self.last_save >= 60 * minutes
        signals = {s: self.preemption.signum == s for s in SIGNALS}
        records, sums = self.step_log.flush({"unreadable": len(self.new_bad), "due": due, **signals})
        bad = next((r for r in records if not all(math.isfinite(v) for k, v in r.items() if k.startswith("loss"))), None)
        if bad is not None:
            stages = {k: v for k, v in bad.items() if k.startswith("loss/")}
            raise NonFiniteLossError(
                f"loss is {bad['loss']} at step {bad['step']} (lr {bad['lr']:.4g}; stage losses {stages}; the mean over "
                f"{self.info.world_size} process(es)). Training stopped; the last good checkpoint is {self.out / 'last.pth'}. "
                "Lower optim.lr, add optim.warmup_epochs, or disable train.amp, then rerun to resume.")
        if sums["unreadable"]:
            self.count_unreadable(all_processes(self.new_bad), jsonl)
        self.new_bad = []
        self.history += records
        if records:
            self._log(records, writer, jsonl, bar)
        return next((s for s in SIGNALS if sums[s] > 0), None), sums["due"] > 0

    def _log(self, records: list[dict], writer, jsonl, bar) -> None:
        bar.set_postfix(loss=f"{records[-1]['loss']:.4f}", lr=f"{records[-1]['lr']:.3g}")
        if not self.info.is_main:
            return
        end = self._end()
        for rec in records:
            if rec["step"] % self.cfg["train"]["log_every"] and rec["step"] != end:
                continue
            jsonl.write(json.dumps(rec) + "\n")
            for k, v in rec.items():
                if k not in ("step", "epoch"):
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, rec["step"])
        jsonl.flush()

    def _preempted(self, signum: int, jsonl) -> Preempted:
        """Checkpoint now (every process has agreed to stop at this step), say so, and the exception to raise."""
        self.save()
        where = f"{self.out / 'last.pth'} at step {self.global_step}"
        if jsonl:
            jsonl.write(json.dumps({"event": "preempted", "step": self.global_step, "signal": int(signum)}) + "\n")
        log.warning("preempted: checkpoint %s written; rerun the same command to resume", where)
        return Preempted(signum, where)

    def _end(self) -> int:
        m = self.cfg["train"]["max_steps"]
        return self.total_steps if not m else min(self.total_steps, m)

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self.maybe_resume()
        writer = jsonl = None
        if self.info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"), purge_step=self.global_step)
            jsonl = open(self.out / "log.jsonl", "a")
            text = yaml.safe_dump(self.runtime.resolved_config(self.cfg), sort_keys=False)
            replace_atomically(self.out / "config.yaml", lambda tmp: tmp.write_text(text))
            log.info("running with %s", self.runtime.record())
        end = self._end()
        bar = tqdm(total=end, initial=self.global_step, desc=f"pretrain {self.model.name}", unit="step",
                   disable=not self.info.is_main, dynamic_ncols=True)
        loader = self.make_loader()
        t0, start_step = time.time(), self.global_step
        try:
            with self.preemption:
                self._train(loader, end, writer, jsonl, bar)
        finally:
            bar.close()
            if writer:
                writer.close()
                jsonl.close()
        return self.summary(time.time() - t0, start_step)

    def _train(self, loader: DataLoader, end: int, writer, jsonl, bar) -> None:
        """Steps to `end`: flushes at logging steps, checkpoints at epoch ends, every `train.ckpt_every_steps`
        and `train.ckpt_every_minutes`, and before stopping for a signal (`Preempted`)."""
        t = self.cfg["train"]
        while self.global_step < end:
            epoch, start_batch = divmod(self.global_step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, start_batch)
            for views, params, _, unreadable in self.batches(loader):
                self.note_unreadable(unreadable)
                lr, values = self.step(views, params)
                self.step_log.add({"step": self.global_step, "epoch": epoch, "lr": lr}, values)
                bar.update(1)
                epoch_end = self.global_step % self.steps_per_epoch == 0
                save = epoch_end or (t["ckpt_every_steps"] and self.global_step % t["ckpt_every_steps"] == 0) \
                    or self.global_step == end
                if save or self.global_step % t["log_every"] == 0:
                    # before any save: a non-finite loss never reaches a checkpoint
                    signum, due = self.flush(writer, jsonl, bar)
                    if signum is not None:
                        raise self._preempted(signum, jsonl)
                    save = save or due
                if epoch_end and self.bad_images:
                    log.info("epoch %d: %d unreadable images skipped so far (%s)", epoch, len(self.bad_images),
                             ", ".join(list(self.bad_images)[:3]) + (", ..." if len(self.bad_images) > 3 else ""))
                if save:
                    self.save()
                if self.global_step >= end:
                    break

    def summary(self, seconds: float, start_step: int) -> dict:
        h = self.history
        stage_keys = sorted({k for r in h for k in r if k.startswith("loss/")})
        n = max(1, min(10, len(h) // 4))
        s = {
            "method": self.model.name, "config": self.cfg["name"], "arch": self.cfg["method"]["arch"],
            "hier": self.cfg["hier"]["enabled"], "expand": self.cfg["expand"]["enabled"],
            "steps": self.global_step, "total_steps": self.total_steps, "steps_this_run": self.global_step - start_step,
            "seconds": round(seconds, 2), "checkpoint": str(self.out / "last.pth"),
            "runtime": self.runtime.record(),
            "unreadable_images": sorted(self.bad_images),
            "loss_first": sum(r["loss"] for r in h[:n]) / n if h else None,
            "loss_last": sum(r["loss"] for r in h[-n:]) / n if h else None,
            "stage_loss_first": {k: sum(r[k] for r in h[:n]) / n for k in stage_keys},
            "stage_loss_last": {k: sum(r[k] for r in h[-n:]) / n for k in stage_keys},
        }
        if self.info.is_main:
            write_json(self.out / "pretrain_summary.json", s)
            if self.global_step == self.total_steps:
                run_folder(self.cfg).finish()
        return s
