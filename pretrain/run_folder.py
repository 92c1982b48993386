"""A run folder's identity: the inputs that decide its result, recorded when the run starts and checked
by every later command that writes into the same folder.

`<folder>/run.json` holds
    identity   what decides the result (weights file hash, resolved config, task, data, seed, package version)
    request    the same inputs as the command line gave them (the benchmark runner's cache key)
    settings   what does not change the result (workers, log interval, process count, git commit)
    status     "running" until the whole schedule has run, then "finished"
A later command into the folder: same identity -> resume (or "already finished", touching nothing);
other identity -> `RunConflict`, naming every difference and the two ways out (another folder, or
overwrite). A changed setting is allowed and logged in the record's history.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from .files import write_json

RUN_FILE = "run.json"
# files that mean "a run lives here" (detectron2 / mmengine / pretraining / every task's result)
ARTEFACTS = ("metrics.json", "last_checkpoint", "last.pth", "pretrain_summary.json", "load_report.json")
# of those, what a run leaves once it has completed a step: a checkpoint or a result (a run without any is not one to protect)
PROGRESS = ("metrics.json", "last_checkpoint", "last.pth", "pretrain_summary.json")
_HASHES: dict[tuple, str] = {}


class RunConflict(ValueError):
    """A command whose inputs differ from those of the run already in its folder."""


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hier-aug")
    except PackageNotFoundError:
        return "unknown"


def git_commit() -> str | None:
    """The checkout's short commit, or None outside a git checkout."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def file_fingerprint(path: str | Path) -> dict:
    """{"path", "bytes", "sha256"} of a file (hashes memoised by path, size and mtime); a file that is
    gone is {"path", "missing": True}, which matches any record of the same path (a deleted checkpoint
    keeps its finished results)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        return {"path": str(p), "missing": True}
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return {"path": str(p), "bytes": st.st_size, "sha256": _HASHES[key]}


_ABSENT = "(absent)"


def _show(v) -> str:
    if isinstance(v, dict) and "path" in v and ("sha256" in v or v.get("missing")):  # a file fingerprint
        return f"{v['path']} ({'sha256 ' + v['sha256'][:12] if 'sha256' in v else 'missing'})"
    s = v if v == _ABSENT else json.dumps(v)
    return s if len(s) <= 90 else s[:87] + "..."


def _diff(old, new, key: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict) and not ("sha256" in old and "sha256" in new):
        if new.get("missing") and old.get("path") == new.get("path"):  # the file is gone: same path, same run
            return []
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{key}.{k}" if key else str(k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (o, n) in enumerate(zip(old, new)) for d in _diff(o, n, f"{key}[{i}]")]
    return [] if old == new else [f"{key}: {_show(old)} -> {_show(new)}"]


def differences(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every key whose value differs (JSON-normalised; a file fingerprint shown as
    its path and hash; a file that is gone matches a record of the same path)."""
    return _diff(json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str)), "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """The run in `path`. `kind` names what runs there ("pretrain", "transfer:voc_det", ...); `elsewhere`
    and `overwrite` are how this tool spells the two ways out of a conflict."""

    def __init__(self, path: str | Path, kind: str, elsewhere: str = "--output DIR", overwrite: str = "--overwrite"):
        self.path, self.kind, self.elsewhere, self.overwrite_flag = Path(path), kind, elsewhere, overwrite

    @property
    def file(self) -> Path:
        return self.path / RUN_FILE

    def record(self) -> dict | None:
        if not self.file.is_file():
            return None
        try:
            rec = json.loads(self.file.read_text())
            assert isinstance(rec, dict) and "identity" in rec
        except (ValueError, AssertionError):
            raise RunConflict(f"{self.file} is unreadable, so the inputs of the run in {self.path} are unknown; "
                              f"{self._ways_out()}") from None
        return rec

    def _ways_out(self) -> str:
        return (f"write to another folder ({self.elsewhere}), or start over in this one with {self.overwrite_flag} "
                "(deletes its checkpoints and results)")

    def has_artefacts(self) -> bool:
        return any((self.path / name).exists() for name in ARTEFACTS)

    def never_stepped(self, rec: dict) -> bool:
        """A record still `running` in a folder without a checkpoint or result: a start that failed before its
        first step (a wrong data path, too many GPUs asked for) left nothing to protect or resume."""
        return rec.get("status") == "running" and not any((self.path / name).exists() for name in PROGRESS)

    def check(self, identity: dict) -> str:
        """Read-only: "new", "resume" or "finished" for a command with `identity`; raises RunConflict."""
        rec = self.record()
        if rec is None:
            if self.has_artefacts():
                found = ", ".join(n for n in ARTEFACTS if (self.path / n).exists())
                raise RunConflict(f"{self.path} holds a run ({found}) without a {RUN_FILE}, so its inputs are unknown "
                                  f"and its results may belong to other ones; {self._ways_out()}")
            return "new"
        if self.never_stepped(rec):
            return "new"
        diff = differences(rec["identity"], identity) if rec.get("kind") == self.kind else [
            f"kind: {rec.get('kind')!r} -> {self.kind!r}"]
        if diff:
            raise RunConflict(f"{self.path} already holds a {rec.get('kind')} run with other inputs:\n"
                              + "".join(f"    {d}\n" for d in diff)
                              + f"  Its checkpoints and results belong to those inputs. Either {self._ways_out()}.")
        return "finished" if rec.get("status") == "finished" else "resume"

    def open(self, identity: dict, settings: dict, request=None, overwrite: bool = False, is_main: bool = True,
             log=print, event: str | None = None) -> str:
        """Claim the folder for a run: "new", "resume" or "finished" (then nothing is written).
        `overwrite` empties a folder that holds a run first. Only `is_main` writes; `event` names what
        this command does in the record's history (default: start / resume)."""
        if overwrite and (self.file.exists() or self.has_artefacts()):
            if is_main:
                log(f"[run] {self.overwrite_flag}: deleting the run in {self.path}")
                shutil.rmtree(self.path)
            state = "new"
        else:
            state = self.check(identity)
        stale = state == "new" and not overwrite and self.file.is_file()
        if stale and is_main:
            log(f"[run] {self.path}: the previous start never completed a step (no checkpoint or result); starting anew")
        if not is_main or state == "finished":
            return state
        rec = self.record() if state == "resume" else None
        event = {"time": _now(), "event": event or ("start" if state == "new" else "resume")}
        if stale:
            event["replaced"] = "a start that never completed a step"
        if rec is not None:
            changed = differences(rec["settings"], settings)
            if changed:
                log("[run] settings changed (they do not change results): " + "; ".join(changed))
                event["settings_changed"] = changed
        else:
            rec = {"kind": self.kind, "status": "running", "started": event["time"], "identity": identity,
                   "request": request, "history": []}
        rec.update(settings=settings, history=rec["history"] + [event])
        try:
            write_json(self.file, rec)
        except OSError as e:
            raise RunConflict(f"cannot write to the run folder {self.path}: {e.strerror or e}; choose a folder you can "
                              f"write ({self.elsewhere})") from None
        return state

    def finish(self, **extra) -> None:
        """Mark the run finished (the whole schedule ran and its result is written); a folder nobody claimed
        (a trainer used in process, without `open`) has no record to mark."""
        rec = self.record()
        if rec is None:
            return
        rec.update(status="finished", finished=_now(), **extra)
        write_json(self.file, rec)
