"""Where the shipped presets are: a checkout's top-level `configs/`, or, in an installed package, the same files
carried by the wheel as `hier_aug_configs/` beside the packages (setup.py maps it onto `configs/`: one copy)."""
from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def configs_dir() -> Path:
    """The folder holding `pretrain/`, `transfer/detectron2/`, `transfer/mmseg/` and `benchmarks/` presets."""
    for folder in (CHECKOUT / "configs", CHECKOUT / "hier_aug_configs"):  # a checkout; installed beside pretrain/
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no shipped presets: neither {CHECKOUT / 'configs'} (a checkout) nor "
                            f"{CHECKOUT / 'hier_aug_configs'} (installed); reinstall the package or run from a checkout")


def shipped(path: str) -> Path:
    """`configs/...` as written in the README and suites -> the shipped file, wherever the presets are."""
    parts = Path(path).parts
    return configs_dir().joinpath(*parts[1:]) if parts and parts[0] == "configs" else Path(path)


def in_checkout() -> bool:
    """Whether the packages run from a checkout (tools/, configs/ beside them) rather than an installed wheel."""
    return (CHECKOUT / "configs").is_dir() and (CHECKOUT / "tools").is_dir()
