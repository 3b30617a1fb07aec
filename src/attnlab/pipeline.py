"""train(cfg) and evaluate(cfg): seed, instantiate from config, fit, test, return the metric.

The entry points (``train.py``, ``eval.py``, ``attnlab-train``, ``attnlab-eval``) only compose the
config and call these. The DataModule is built first: the model config reads what it needs from
it through the ``${datamodule:ATTR}`` resolver (vocabulary size, pad id, class count), and the
config is then resolved once, so what is logged and saved is what ran.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from attnlab.callbacks.fault_tolerance import NonFiniteLossError
from attnlab.errors import ConfigError
from attnlab.resolvers import bound_datamodule, register_resolvers
from attnlab.trainer_setup import close_loggers, hand_over_checkpoint, make_trainer
from attnlab.utils.checkpoint_io import check_checkpoint_fits, read_checkpoint
from attnlab.utils.config import print_config, save_config
from attnlab.utils.config_checks import check_fits_positions, check_run_config, check_targets
from attnlab.utils.jobs import children_run_this_job_only, distributed_job, in_multirun, optimized
from attnlab.utils.run_folder import RESOLVED_CONFIG, continue_run, find_checkpoint, write_run_info
from attnlab.utils.step_budget import reach_min_steps

log = logging.getLogger(__name__)


def build(
    cfg: DictConfig, checkpoint: Path | None = None, state: dict | None = None
) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The DataModule and the task (a LightningModule around the plain model), from ``cfg``;
    the task holds the DataModule's interface (``task.data``: tokenizers, class names).

    Resolves ``cfg`` in place: every ``${datamodule:...}`` becomes the number it stood for.
    With a ``checkpoint`` (its contents ``state``, when already read), the DataModule first takes
    its saved state (the tokenizer), so ids and sizes match the weights even where a retrained
    vocabulary would differ, and a checkpoint that does not fit the model is a clear error.
    """
    check_targets(cfg.data, "data")  # before the DataModule sees a mistyped value
    datamodule = instantiate(cfg.data)
    if checkpoint is not None and state is None:
        state = read_checkpoint(checkpoint)
    saved = state.get(type(datamodule).__qualname__) if state is not None else None
    if saved is not None:
        datamodule.load_state_dict(saved)
    with bound_datamodule(datamodule):
        OmegaConf.resolve(cfg)
    check_run_config(cfg)
    task = instantiate(cfg.task, net=instantiate(cfg.model))
    check_fits_positions(cfg, task.net)
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    task.data = datamodule.interface
    if state is not None:
        check_checkpoint_fits(task, state, checkpoint, cfg.task_name)
    return datamodule, task


def _fit(
    trainer: L.Trainer, task: L.LightningModule, data: L.LightningDataModule, ckpt: Path | None
) -> bool:
    """``trainer.fit``; False where the loss went NaN/inf in a multirun job, so a diverged
    trial is scored as the worst one instead of crashing the sweep (a single run raises)."""
    try:
        trainer.fit(task, datamodule=data, ckpt_path=ckpt)
    except NonFiniteLossError as error:
        if not in_multirun():
            raise
        log.error(str(error))
        return False
    return True


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v)}


@dataclass
class RunResult:
    """What a training run leaves: its metrics, its folder and its best checkpoint."""

    metrics: dict[str, float]  # the last logged value of every metric, test metrics included
    run_dir: Path
    best_checkpoint: Path | None  # of the monitored ModelCheckpoint (None: checkpointing off)
    optimized: float | None  # cfg.optimized_metric, as returned to sweepers


def train(cfg: DictConfig) -> float | None:
    """Fit and test one run; returns ``cfg.optimized_metric`` for sweepers."""
    return run(cfg).optimized


def run(cfg: DictConfig) -> RunResult:
    """Fit and test one run (``cfg.train``, ``cfg.test``); resume from ``cfg.ckpt_path`` in the
    folder of the run that wrote it."""
    register_resolvers()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    resume_from = find_checkpoint(cfg)
    state = None
    if resume_from:
        continue_run(cfg, resume_from)
        state = read_checkpoint(resume_from)
    datamodule, task = build(cfg, resume_from, state)
    reach_min_steps(cfg, datamodule)
    children_run_this_job_only()
    print_config(cfg, enabled=cfg.extras.print_config)
    save_config(cfg, Path(cfg.paths.output_dir) / RESOLVED_CONFIG)
    trainer, loggers = make_trainer(cfg)
    if state is not None:
        hand_over_checkpoint(trainer, resume_from, state)
        del state
    best = trainer.checkpoint_callback  # the first ModelCheckpoint: the monitored one
    best = best if isinstance(best, ModelCheckpoint) else None
    try:
        with distributed_job():
            for logger in loggers:
                logger.log_hyperparams(task.run_config)
            if trainer.is_global_zero:
                write_run_info(cfg, loggers)
            diverged = cfg.train and not _fit(trainer, task, datamodule, resume_from)
            metrics = _metrics(trainer)
            if diverged and cfg.get("optimized_metric"):
                metrics[cfg.optimized_metric] = math.nan  # scored as the worst trial
            if cfg.test and not diverged:
                ckpt = (best.best_model_path or None) if best is not None else None
                trainer.test(task, datamodule=datamodule, ckpt_path=ckpt if cfg.train else None)
                metrics.update(_metrics(trainer))
    finally:
        close_loggers()
    best_path = Path(best.best_model_path) if best is not None and best.best_model_path else None
    return RunResult(metrics, Path(cfg.paths.output_dir), best_path, optimized(cfg, metrics))


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint ``cfg.ckpt_path`` on the test split; returns the test metrics."""
    register_resolvers()
    ckpt = find_checkpoint(cfg)
    if ckpt is None:
        raise ConfigError("eval needs a checkpoint: ckpt_path=PATH (or ckpt_path=last)")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    state = read_checkpoint(ckpt)
    datamodule, task = build(cfg, ckpt, state)
    trainer, _ = make_trainer(cfg)
    hand_over_checkpoint(trainer, ckpt, state)
    del state
    try:
        trainer.test(task, datamodule=datamodule, ckpt_path=str(ckpt))
    finally:
        close_loggers()
    return _metrics(trainer)


def load_checkpoint(
    path: str | Path,
) -> tuple[DictConfig, L.LightningDataModule, L.LightningModule]:
    """A trained run back from its checkpoint alone: config, DataModule (tokenizer) and task.

    Needs no data files: the resolved config and the DataModule's state (tokenizer, class
    names) are saved in every checkpoint.
    """
    register_resolvers()
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: '{path}'; check ckpt_path")
    state = read_checkpoint(path)
    if "attnlab_config" not in state:
        raise ConfigError(f"'{path}' was not written by attnlab's train.py (it has no config)")
    cfg = OmegaConf.create(state["attnlab_config"])
    # Without the trainer: a run trained on GPUs loads on a laptop (its devices go unchecked).
    datamodule, task = build(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "trainer"]), path, state
    )
    task.load_state_dict(state["state_dict"])
    return cfg, datamodule, task.eval()
