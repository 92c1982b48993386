"""A run folder's identity: the inputs that decide its result, recorded when the run starts and checked
by every later command that writes into the same folder.

`<folder>/run.json` holds
    identity   what decides the result (weights file hash, resolved config, task, data, seed, package version)
    request    the same inputs as the command line gave them (the benchmark runner's cache key)
    settings   what does not change the result (workers, log interval, process count, git commit)
    status     "running" until the whole schedule has run, then "finished"
The process that claims the folder holds `<folder>/.lock` (`FolderLock`) until it finishes or exits: a
second command into a folder in use is refused, naming the host and process that hold it.
A later command into the folder: same identity -> resume (or "already finished", touching nothing);
other identity -> `RunConflict`, naming every difference and the two ways out (another folder, or
overwrite). A changed setting is allowed and logged in the record's history.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pretrain.runs.cli import InputError
from pretrain.runs.files import write_json

RUN_FILE = "run.json"
# files that mean "a run lives here" (detectron2 / mmengine / pretraining / every task's result)
ARTEFACTS = ("metrics.json", "last_checkpoint", "last.pth", "pretrain_summary.json", "load_report.json")
# of those, what a run leaves once it has completed a step: a checkpoint or a result (a run without any is not one to protect)
PROGRESS = ("metrics.json", "last_checkpoint", "last.pth", "pretrain_summary.json")
_HASHES: dict[tuple, str] = {}


class RunConflict(InputError):
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


def _is_file(v) -> bool:
    return isinstance(v, dict) and "path" in v and ("sha256" in v or bool(v.get("missing")))


def _diff(old, new, key: str) -> list[str]:
    if _is_file(old) and _is_file(new):  # one line naming both files
        if new.get("missing") and old.get("path") == new.get("path"):  # the file is gone: same path, same run
            return []
        return [] if old == new else [f"{key}: {_show(old)} -> {_show(new)}"]
    if isinstance(old, dict) and isinstance(new, dict) and not ("sha256" in old and "sha256" in new):
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


LOCK_FILE = ".lock"
HEARTBEAT_S = 60  # the holder touches its lock this often
STALE_S = 600     # a lock on another host untouched this long belongs to a process that is gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class FolderLock:
    """One writer per run folder: `<folder>/.lock` made with O_EXCL (atomic on local and NFS file systems),
    holding the host, process id, start time and command; refreshed every HEARTBEAT_S while held. A lock
    whose process is gone (same host: no such pid; another host: untouched for STALE_S) is taken over.
    The process that holds it may take it again (a tool called twice in one process)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_FILE
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(), "command": " ".join(sys.argv)[:300]}
        self._stop: threading.Event | None = None

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # being written this very moment, or a broken file: judged by its age below
            return {}

    def _stale(self, h: dict) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        if h.get("host") == self.me["host"] and isinstance(h.get("pid"), int):
            return not _alive(h["pid"])
        return age > STALE_S

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                h = self.holder()
                if h is None:
                    continue  # released between the two calls
                if h.get("host") == self.me["host"] and h.get("pid") == self.me["pid"]:
                    return self._hold()
                if not self._stale(h):
                    raise RunConflict(
                        f"{self.path.parent} is in use by another run: host {h.get('host', '?')}, process {h.get('pid', '?')}, "
                        f"since {h.get('since', '?')} ({h.get('command', '?')}). One run writes a folder at a time; wait for it, "
                        f"or write elsewhere. If that process is gone, delete {self.path}.") from None
                try:  # a dead holder's lock: moved aside atomically, so two takers cannot both remove it
                    os.rename(self.path, self.path.with_name(f"{LOCK_FILE}.stale.{uuid.uuid4().hex[:8]}"))
                except FileNotFoundError:
                    pass
                for old in self.path.parent.glob(f"{LOCK_FILE}.stale.*"):
                    old.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            return self._hold()
        raise RunConflict(f"could not take the lock {self.path} (it changed hands repeatedly); rerun")

    def _hold(self) -> None:
        if self._stop is None:
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), daemon=True).start()
            atexit.register(self.release)

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        h = self.holder()
        if h and h.get("host") == self.me["host"] and h.get("pid") == self.me["pid"]:
            self.path.unlink(missing_ok=True)


_LOCKS: dict[Path, FolderLock] = {}


def lock_folder(folder: str | Path) -> FolderLock:
    """Hold `folder`'s lock for this process (until it exits or `release_folder`); RunConflict names another holder."""
    key = Path(folder).resolve()
    lock = _LOCKS.setdefault(key, FolderLock(key))
    lock.acquire()
    return lock


def release_folder(folder: str | Path) -> None:
    lock = _LOCKS.pop(Path(folder).resolve(), None)
    if lock is not None:
        lock.release()


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
        if not is_main:
            return self._open(identity, settings, request, overwrite, is_main, log, event)
        lock_folder(self.path)  # before reading the record: two commands cannot both find the folder free
        try:
            state = self._open(identity, settings, request, overwrite, is_main, log, event)
        except BaseException:
            release_folder(self.path)
            raise
        if state == "finished":  # nothing to write: the folder stays free
            release_folder(self.path)
        return state

    def _open(self, identity, settings, request, overwrite, is_main, log, event) -> str:
        if overwrite and (self.file.exists() or self.has_artefacts()):
            if is_main:
                log(f"[run] {self.overwrite_flag}: deleting the run in {self.path}")
                for p in self.path.iterdir():
                    if p.name != LOCK_FILE:
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
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
        release_folder(self.path)
