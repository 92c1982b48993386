"""What the detection and segmentation protocol modules share: finding a shipped preset, flattening a config
to dotted keys, listing the protocol keys a run changed, the protocol label, and the raise-or-record rule
for an input-format mismatch. Each engine's own rules (adapting a preset to the hardware, which keys
decide a result) stay in `transfer/detectron2/protocol.py` and `transfer/segmentation/protocol.py`."""
from __future__ import annotations

from pathlib import Path


def resolve_preset(name: str, folder: Path, suffixes: tuple[str, ...], engine: str) -> Path:
    """A shipped preset by name (looked up in `folder`) or a path to a config file with one of `suffixes`."""
    path = Path(name)
    if path.suffix in suffixes and path.is_file():
        return path
    stem = name
    for s in suffixes:
        stem = stem.removesuffix(s)
    path = folder / f"{stem}{suffixes[0]}"
    if not path.is_file():
        shipped = sorted(p.stem for p in folder.glob(f"*{suffixes[0]}") if not p.stem.startswith("Base"))
        raise FileNotFoundError(f"no {engine} config {name!r}; shipped presets: {', '.join(shipped)}")
    return path


def flatten(tree, prefix: str = "") -> dict:
    """A nested config (dicts, and lists holding dicts) as {dotted key: leaf value}; list items by index."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, (list, tuple)) and any(isinstance(v, dict) for v in tree):
        out = {}
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: tree}


def changed_keys(before: dict, after: dict, is_protocol, skip: list[str] = ()) -> list[str]:
    """'KEY: old -> new' for every protocol key (`is_protocol(key)`) whose value differs between two flat
    configs; keys named at the start of the entries in `skip` (changes already listed) are left out."""
    done = tuple(e.split(":")[0] for e in skip)
    return [f"{k}: {before.get(k)} -> {after.get(k)}" for k in sorted(set(before) | set(after))
            if is_protocol(k) and k not in done and before.get(k) != after.get(k)]


def label(kind: str, changes: list[str]) -> str:
    """"demo" for demo presets; else "non-standard" when anything changed; else the preset's own kind
    ("standard" for the community's protocol, "paper" for the paper's variant)."""
    if kind == "demo":
        return "demo"
    return "non-standard" if changes else kind


def input_mismatch(msg: str, force: bool) -> list[str]:
    """A weights / input-pipeline mismatch: ValueError, or with `force` the mismatch as a protocol change."""
    if not force:
        raise ValueError(f"{msg}. --allow-input-mismatch forces the run, labelled non-standard")
    return [f"input format mismatch (forced): {msg}"]
