"""Where a pretraining run writes (`train.output`) and what identifies it there (`pretrain.runs.folder.RunFolder`)."""
from __future__ import annotations

import logging
from pathlib import Path

from pretrain.distributed.launch import DistInfo
from pretrain.runs.folder import RunFolder, git_commit, package_version

log = logging.getLogger("pretrain")


def output_dir(cfg: dict) -> Path:
    return Path(cfg["train"]["output"] or f"work_dirs/{cfg['name']}")


def run_folder(cfg: dict) -> RunFolder:
    return RunFolder(output_dir(cfg), "pretrain", elsewhere="train.output=DIR", overwrite="--overwrite")


def run_identity(cfg: dict) -> tuple[dict, dict]:
    """(identity, settings) of a pretraining run: the config's result-deciding keys (`config.identity`) and
    this package's version; the settings with the git commit."""
    from pretrain.config.config import identity

    ident, settings = identity(cfg)
    ident["package"] = package_version()
    settings["git"] = git_commit()
    return ident, settings


def open_run(cfg: dict, info: DistInfo = DistInfo(), overwrite: bool = False) -> str:
    """Claim the run folder (`pretrain.runs.folder.RunFolder.open`): "new", "resume" or "finished"."""
    ident, settings = run_identity(cfg)
    return run_folder(cfg).open(ident, dict(settings, world_size=info.world_size), request=ident, overwrite=overwrite,
                                is_main=info.is_main, log=log.info)
