"""Training budgets that hold on a dataset of any size: ``trainer.min_steps`` is honoured.

Lightning stops at ``max_epochs`` even when ``min_steps`` optimizer steps have not been taken,
so 50 epochs of 1,000 images are 400 steps where 50 epochs of MNIST are 20,000. Before the
trainer is made, ``max_epochs`` is raised to the epochs that reach ``min_steps`` at the data's
steps per epoch: a small dataset gets the steps a model needs, a large one its epochs. The
learning-rate schedule, planned from the trainer's total steps, follows.
"""

from __future__ import annotations

import logging
import math

import lightning as L
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def steps_per_epoch(datamodule: L.LightningDataModule, accumulate: int) -> int | None:
    """Optimizer steps in one epoch of the train loader (None for a stream: no length)."""
    datamodule.setup("fit")
    try:
        batches = len(datamodule.train_dataloader())
    except TypeError:
        return None
    return max(1, batches // accumulate)


def reach_min_steps(cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """Raise ``cfg.trainer.max_epochs`` so training takes at least ``trainer.min_steps`` steps.

    Left alone: a run without ``min_steps`` or ``max_epochs``, and a cut one (``max_steps``,
    ``limit_train_batches``, ``fast_dev_run``: debugging runs stay as short as asked)."""
    trainer = cfg.get("trainer") or {}
    min_steps, max_epochs = trainer.get("min_steps"), trainer.get("max_epochs")
    cut = (trainer.get("max_steps") or -1) > 0 or trainer.get("limit_train_batches") is not None
    if not min_steps or max_epochs is None or max_epochs < 0 or cut or trainer.get("fast_dev_run"):
        return
    per_epoch = steps_per_epoch(datamodule, int(trainer.get("accumulate_grad_batches") or 1))
    if per_epoch is None:
        return
    needed = math.ceil(min_steps / per_epoch)
    if needed > max_epochs:
        log.info(
            f"trainer.max_epochs {max_epochs} -> {needed}: {per_epoch} steps an epoch, "
            f"trainer.min_steps={min_steps}"
        )
        with open_dict(cfg):
            cfg.trainer.max_epochs = needed
