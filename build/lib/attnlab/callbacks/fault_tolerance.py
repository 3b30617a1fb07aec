"""Faults a long run must survive or report clearly: a non-finite loss and pre-emption.

``NonFiniteLossGuard`` looks at each training loss before its optimizer step, so a NaN/inf loss
never reaches the weights: it stops the run naming the step and the last good checkpoint, or
skips the step. ``PreemptionCheckpoint`` saves ``last.ckpt`` when the job is told to stop
(SIGTERM, or SIGUSR1 as schedulers send before a time limit) so ``ckpt_path=last`` resumes it.
``ExactResume`` keeps the random state in every checkpoint, so a resumed run draws what the
uninterrupted one would have, and sees that the loaders continue where they stopped (with the
resumable loaders of ``data/base.py``: exact).
"""

from __future__ import annotations

import logging
import math
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from attnlab.errors import ConfigError
from attnlab.utils.random_state import random_state, set_random_state

log = logging.getLogger(__name__)
ACTIONS = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and the fix."""


def last_good_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest checkpoint the run's ``ModelCheckpoint`` callbacks have written."""
    paths = [
        Path(p)
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint)
        for p in (cb.last_model_path, cb.best_model_path)
        if p and Path(p).is_file()
    ]
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


class NonFiniteLossGuard(Callback):
    """Stop (``action="stop"``) or skip the optimizer step (``action="skip"``) of a batch whose
    training loss is NaN/inf, checked after backward and before the step, so the weights stay
    those of the last finite step.

    Skipping drops every gradient (``grad = None``): the optimizer then leaves each parameter
    and its state (momentum, weight decay) untouched; the LR scheduler still advances. After
    ``max_skips`` skipped steps in a row the run stops, as with ``stop``.
    """

    def __init__(self, action: str = "stop", max_skips: int = 10) -> None:
        if action not in ACTIONS:
            raise ConfigError(f"callbacks.non_finite_loss.action={action!r}: use one of {ACTIONS}")
        if max_skips < 0:
            raise ConfigError(f"callbacks.non_finite_loss.max_skips={max_skips}: use 0 or more")
        self.action = action
        self.max_skips = max_skips
        self._bad_loss: float | None = None  # the first non-finite loss of this step
        self._batch_idx = 0
        self._skipped = 0  # skipped steps in a row

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        if self._bad_loss is None and not torch.isfinite(loss.detach()).all():
            self._bad_loss = float(loss.detach().float().mean())

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        bad, self._bad_loss = self._bad_loss, None
        if bad is None:
            self._skipped = 0
            return
        if self.action == "stop" or self._skipped >= self.max_skips:
            raise NonFiniteLossError(self._message(trainer, bad))
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        self._skipped += 1
        log.warning(
            f"training loss is {bad} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {self._batch_idx}): optimizer step skipped "
            f"({self._skipped} in a row, stopping after {self.max_skips})"
        )

    def _message(self, trainer: L.Trainer, bad: float) -> str:
        ckpt = last_good_checkpoint(trainer)
        where = (
            f"the last good checkpoint is {ckpt} (resume with ckpt_path={ckpt})"
            if ckpt
            else "no checkpoint was saved before it"
        )
        skipped = f" after {self._skipped} skipped steps in a row" if self._skipped else ""
        kind = "NaN" if math.isnan(bad) else "infinite"
        return (
            f"training loss is {kind} ({bad}) at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {self._batch_idx}){skipped}: training stopped "
            f"before this update reached the weights; {where}. Fix: lower task.optimizer.lr, "
            f"clip gradients (trainer.gradient_clip_val=1.0), check the data for bad values, "
            f"or skip such batches with callbacks.non_finite_loss.action=skip"
        )


class PreemptionCheckpoint(Callback):
    """On SIGTERM or SIGUSR1 during ``fit``: finish the current batch, save
    ``dirpath/filename.ckpt``, and exit (status 0, Lightning's ``SIGTERMException``).

    Lightning itself turns SIGTERM into ``SIGTERMException`` after the running batch; this
    callback routes SIGUSR1 the same way (unless a handler is installed already, e.g. Lightning's
    SLURM auto-requeue) and writes the checkpoint from ``on_exception``.
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.received: str | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        if signal.getsignal(signal.SIGUSR1) in (None, signal.SIG_DFL):
            signal.signal(signal.SIGUSR1, self._forward_to_sigterm)

    def _forward_to_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """Stop as on SIGTERM: Lightning's handler (installed for fit) sets the flag."""
        self.received = signal.Signals(signum).name
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signum, frame)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        trainer.save_checkpoint(self.path)
        log.warning(
            f"{self.received or 'SIGTERM'} received: stopped at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}) and saved {self.path}; resume with ckpt_path=last "
            f"(the newest last.ckpt of this task) or ckpt_path={self.path}"
        )


class ExactResume(Callback):
    """What an exact resume needs beyond Lightning's own checkpoint: every rank's random state,
    saved in each checkpoint and put back when training resumes, and the loaders' position
    where Lightning skips it.

    Dropout, random masks and augmentations after a resume then draw what the uninterrupted run
    drew. Both are restored at ``on_train_start``, after the sanity check, just before the first
    resumed batch is drawn; the loaders' state itself (order, worker seeds) is torchdata's.
    """

    def __init__(self) -> None:
        self._to_restore: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = random_state()
        if not (dist.is_available() and dist.is_initialized()):
            return {"ranks": [state]}
        ranks: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, state)  # checkpoints are written on every rank's call
        return {"ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict["ranks"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        load_skipped_loader_states(trainer)
        ranks, self._to_restore = self._to_restore, None
        if ranks is None:
            return
        if len(ranks) != trainer.world_size:
            log.warning(
                f"the checkpoint holds the random state of {len(ranks)} processes, this run has "
                f"{trainer.world_size}: random draws after the resume differ from the first run's"
            )
            return
        set_random_state(ranks[trainer.global_rank])


def load_skipped_loader_states(trainer: L.Trainer) -> None:
    """Give the training loaders the position saved in the checkpoint when Lightning did not.

    A task that reads ``trainer.estimated_stepping_batches`` in ``configure_optimizers`` (ours,
    for OneCycleLR's total steps) makes Lightning build the loaders before the checkpoint's loop
    state is read, and it then never loads their saved state (Lightning issue #20550, open at
    2.6). Set the samplers' epoch (what Lightning does at each epoch start: the order to replay,
    e.g. DistributedSampler's), load the state and start the epoch's iterator again, as
    Lightning's proposed fix does; a no-op where nothing is pending (a fixed Lightning, a fresh
    run, an epoch-end checkpoint).
    """
    fit_loop = trainer.fit_loop
    if not fit_loop._combined_loader_states_to_load or fit_loop._data_fetcher is None:
        return
    for loader in fit_loop._combined_loader.flattened:  # the order to replay is this epoch's
        _set_sampler_epoch(loader, fit_loop.epoch_progress.current.processed)
    fit_loop._load_combined_loader_states()
    iter(fit_loop._data_fetcher)
