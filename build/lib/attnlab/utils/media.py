"""Pictures and tables to W&B: every callback writes its files to the run dir and, when a W&B
logger is attached, logs them there too (other loggers have no media panels)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def log_image(trainer: L.Trainer, key: str, path: str | Path) -> None:
    for logger in wandb_loggers(trainer):
        logger.log_image(key, [str(path)])


def log_table(
    trainer: L.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    for logger in wandb_loggers(trainer):
        logger.log_table(key, columns=list(columns), data=[list(row) for row in rows])
