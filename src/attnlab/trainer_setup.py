"""The Lightning Trainer of a run: its loggers (W&B offline when unreachable), callbacks and
plugins from the config, and the checkpoint the pipeline already read handed to it."""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from attnlab.utils.checkpoint_io import AtomicCheckpointIO
from attnlab.utils.hardware import device_name, native_bf16
from attnlab.utils.wandb_fallback import online_or_offline

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None, kind: type) -> list:
    """Every ``_target_`` entry of a callbacks/logger group, skipping disabled (null) ones."""
    if not group:
        return []
    built = [instantiate(node) for node in group.values() if node and "_target_" in node]
    return [obj for obj in built if isinstance(obj, kind)]


def close_loggers() -> None:
    """Finish the W&B run even after an exception, so the next multirun job starts clean."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def make_trainer(cfg: DictConfig) -> tuple[L.Trainer, list[Logger]]:
    os.environ.setdefault("WANDB_MODE", "offline")  # never a login prompt; `wandb sync` later
    make_loggers = partial(instantiate_all, cfg.get("logger"), Logger)
    loggers = online_or_offline(make_loggers(), rebuild=make_loggers)  # W&B unreachable: offline
    callbacks = instantiate_all(cfg.get("callbacks"), Callback)
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    warn_if_bf16_is_emulated(trainer)
    return trainer, loggers


def warn_if_bf16_is_emulated(trainer: L.Trainer) -> None:
    """bf16 on a CPU without bf16 instructions runs, but several times slower than fp32: say so
    at the start rather than let the user wonder why the run crawls."""
    device = trainer.strategy.root_device
    if str(trainer.precision).startswith("bf16") and not native_bf16(device):
        log.warning(
            "trainer.precision=%s on %s, which has no bf16 matmul instructions (AVX512_BF16 or "
            "AMX): torch emulates them, several times slower than fp32 (8x for experiment=vit). "
            "Use trainer.precision=32-true on this machine.",
            trainer.precision,
            device_name(device),
        )


def hand_over_checkpoint(trainer: L.Trainer, path: Path, state: dict) -> None:
    """Lightning restores from the checkpoint ``build`` already read, not from a second read."""
    checkpoint_io = trainer.strategy.checkpoint_io
    if isinstance(checkpoint_io, AtomicCheckpointIO):  # trainer.plugins of the default config
        checkpoint_io.hand_over(path, state)
