"""Writing files so that nothing is ever half-written: one atomic writer for checkpoints, weights and JSON.

A file appears complete or not at all: it is written to a temporary file in the target's folder,
fsynced and renamed over the target. The new file gets the permissions a plain `open()` would give
it (0666 minus the process umask), so colleagues sharing a cluster folder can read results.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_atomically(path: str | Path, write) -> None:
    """`write(tmp)` writes a temporary file in `path`'s folder; it is fsynced and renamed over `path`:
    a crash leaves either the old or the new file, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, write_to) -> None:
    """`write_to(f)` writes into a binary file object; the result replaces `path` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write_to(f)

    replace_atomically(path, write)


def write_json(path: str | Path, obj) -> None:
    """`obj` as indented JSON (non-JSON values via str), atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def save_atomic(obj, path: str | Path) -> None:
    """torch.save, atomically."""
    import torch

    replace_atomically(path, lambda tmp: torch.save(obj, tmp))
