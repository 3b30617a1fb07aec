"""A run's folder: what it holds, where ``ckpt_path`` points, and resuming in it.

    outputs/<task>/runs/<timestamp>/        one folder per run (a sweep: .../multiruns/<ts>/<n>)
        .hydra/                             Hydra's config, overrides and hydra settings
        <task>.log                          the console log (a resumed run appends to it)
        config_resolved.yaml                the config that ran, every value resolved
        run.json                            the task name and the W&B run id
        checkpoints/last.ckpt, epochNNN-*.ckpt
        csv/version_N/, wandb/, ...         the loggers' files (one version per attempt)
        resumes/<timestamp>/                Hydra's files of each resumed attempt

A run resumed with ``ckpt_path=last`` (or a checkpoint's path) continues in the folder that
wrote the checkpoint, as NeMo's exp_manager does: one run, one folder, one W&B run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict, read_write

from attnlab.errors import ConfigError

RUN_INFO = "run.json"  # the W&B run id, so a resumed run continues it
RESOLVED_CONFIG = "config_resolved.yaml"  # what ran (Hydra's .hydra/config.yaml is unresolved)
CHECKPOINTS = "checkpoints"
RESUMES = "resumes"  # Hydra's files of each resumed attempt, by the attempt's folder name

log = logging.getLogger(__name__)


def find_checkpoint(cfg: DictConfig) -> Path | None:
    """``ckpt_path``: null, a path, or ``last`` = the newest last.ckpt of this task's runs."""
    if not cfg.get("ckpt_path"):
        return None
    if cfg.ckpt_path == "last":
        runs = Path(cfg.paths.output_root) / cfg.task_name
        pattern = f"*runs/**/{CHECKPOINTS}/last.ckpt"
        candidates = sorted(runs.glob(pattern), key=os.path.getmtime)
        if not candidates:
            raise ConfigError(
                f"ckpt_path=last: no last.ckpt under {runs}; train first, or give ckpt_path=PATH"
            )
        return candidates[-1]
    path = Path(cfg.ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: ckpt_path={cfg.ckpt_path}; check the path")
    return path


def folder_of(checkpoint: Path) -> Path | None:
    """The run folder that wrote ``checkpoint`` (None for a checkpoint kept elsewhere)."""
    folder = checkpoint.resolve().parent.parent
    is_run = (folder / RUN_INFO).is_file() or (folder / RESOLVED_CONFIG).is_file()
    return folder if checkpoint.parent.name == CHECKPOINTS and is_run else None


def continue_run(cfg: DictConfig, checkpoint: Path) -> None:
    """Point the run at the one that wrote ``checkpoint``, before ``cfg`` is resolved: its
    folder (every ``${paths.output_dir}``: loggers, pictures, the log file), its checkpoint
    folder and its W&B run id. Hydra's files of this attempt move to ``resumes/``."""
    checkpoint_cb = cfg.get("callbacks", {}).get("model_checkpoint")
    if checkpoint_cb:
        checkpoint_cb.dirpath = str(checkpoint.parent)
    info = checkpoint.parent.parent / RUN_INFO
    wandb_cfg = cfg.get("logger", {}).get("wandb")
    if wandb_cfg and info.is_file():
        wandb_cfg.id = json.loads(info.read_text()).get("wandb_id")
    folder = folder_of(checkpoint)
    here = Path(cfg.paths.output_dir).resolve()
    if folder is None or folder == here:
        return
    cfg.paths.output_dir = str(folder)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = str(folder)  # DDP ranks are started in it (Lightning reads it)
    _move_attempt_files(here, folder)
    log.info(f"resuming {checkpoint}: this run continues in {folder}")


def _move_attempt_files(attempt: Path, folder: Path) -> None:
    """What Hydra already wrote in the attempt's own folder goes into the run's: the log file
    (appended to the run's, and logging continues there) and ``.hydra/`` (to
    ``resumes/<attempt>/``); the attempt's folder is then removed if nothing else is in it."""
    if not attempt.is_dir():
        return
    for handler in logging.getLogger().handlers:
        if (
            isinstance(handler, logging.FileHandler)
            and Path(handler.baseFilename).parent == attempt
        ):
            handler.close()  # reopened, appending, at the next record
            source, target = Path(handler.baseFilename), folder / Path(handler.baseFilename).name
            with target.open("ab") as out:
                out.write(source.read_bytes())
            source.unlink()
            handler.baseFilename, handler.mode = str(target), "a"
    if (attempt / ".hydra").is_dir():
        (folder / RESUMES).mkdir(exist_ok=True)
        shutil.move(attempt / ".hydra", folder / RESUMES / attempt.name)
    if not any(attempt.iterdir()):
        attempt.rmdir()


def write_run_info(cfg: DictConfig, loggers: list[Logger]) -> None:
    """``run.json``: the task name and the W&B run id (what a resume continues)."""
    info = {"task_name": cfg.task_name}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            info["wandb_id"] = logger.experiment.id
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_INFO).write_text(json.dumps(info))
