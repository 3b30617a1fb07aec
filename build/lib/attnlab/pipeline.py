"""train(cfg) and evaluate(cfg): seed, instantiate from config, fit, test, return the metric.

The entry points (``train.py``, ``eval.py``, ``attnlab-train``, ``attnlab-eval``) only compose the
config and call these. The DataModule is built first: the model config reads what it needs from
it through the ``${datamodule:ATTR}`` resolver (vocabulary size, pad id, class count), and the
config is then resolved once, so what is logged and saved is what ran.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from attnlab.callbacks.fault_tolerance import NonFiniteLossError
from attnlab.data.tokenization import pretrained_vocab
from attnlab.errors import ConfigError
from attnlab.utils.checkpoint_io import read_checkpoint
from attnlab.utils.config import print_config, save_config
from attnlab.utils.config_checks import check_run_config
from attnlab.utils.wandb_fallback import online_or_offline

log = logging.getLogger(__name__)
_BOUND: dict[str, Any] = {}
RUN_INFO = "run.json"  # in each run dir: the W&B run id, so a resumed run continues it


def register_resolvers() -> None:
    """``${datamodule:vocab_size}``, ``${run_name:task,overrides}``, ``${run_group:task}``,
    ``${gpu_precision:}`` and ``${pretrained_vocab:path,default}``, registered once."""
    if not OmegaConf.has_resolver("datamodule"):
        OmegaConf.register_new_resolver("datamodule", _datamodule_attr)
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver(
            "run_name", lambda task, overrides: f"{task}:{overrides}" if overrides else task
        )
    if not OmegaConf.has_resolver("run_group"):
        OmegaConf.register_new_resolver("run_group", run_group)
    if not OmegaConf.has_resolver("gpu_precision"):
        OmegaConf.register_new_resolver("gpu_precision", gpu_precision)
    if not OmegaConf.has_resolver("pretrained_vocab"):
        OmegaConf.register_new_resolver("pretrained_vocab", pretrained_vocab)


def gpu_precision() -> str:
    """``bf16-mixed`` where the GPU computes in bf16 (Ampere and newer; also when no GPU is
    visible yet), else ``16-mixed``: fp16 autocast, with Lightning's loss scaling."""
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "16-mixed"
    return "bf16-mixed"


def run_group(task: str) -> str:
    """The W&B group: the experiment for single runs, ``<experiment>/<sweep folder>`` for the
    jobs of a ``-m`` sweep, so each sweep's runs sit side by side."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{task}/{Path(HydraConfig.get().sweep.dir).name}"
    return task


def _datamodule_attr(name: str) -> Any:
    if "datamodule" not in _BOUND:
        raise ConfigError(f"${{datamodule:{name}}} is only known once the DataModule is built")
    if not hasattr(_BOUND["datamodule"], name):
        raise ConfigError(f"the DataModule has no attribute '{name}' (used as ${{datamodule:...}})")
    return getattr(_BOUND["datamodule"], name)


@contextmanager
def bound_datamodule(datamodule: L.LightningDataModule) -> Iterator[None]:
    _BOUND["datamodule"] = datamodule
    try:
        yield
    finally:
        _BOUND.pop("datamodule", None)


def build(
    cfg: DictConfig, checkpoint: Path | None = None
) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The DataModule and the task (a LightningModule around the plain model), from ``cfg``.

    Resolves ``cfg`` in place: every ``${datamodule:...}`` becomes the number it stood for.
    With a ``checkpoint``, the DataModule first takes its saved state (the tokenizer), so ids
    and sizes match the weights even where a retrained vocabulary would differ.
    """
    datamodule = instantiate(cfg.data)
    state = None
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        saved = state.get(type(datamodule).__qualname__)
        if saved is not None:
            datamodule.load_state_dict(saved)
    with bound_datamodule(datamodule):
        OmegaConf.resolve(cfg)
    check_run_config(cfg)
    task = instantiate(cfg.task, net=instantiate(cfg.model))
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    if state is not None:
        _check_checkpoint_fits(task, state, checkpoint, cfg.task_name)
    return datamodule, task


def _check_checkpoint_fits(
    task: L.LightningModule, state: dict, path: Path, experiment: str
) -> None:
    """A checkpoint of another experiment, model size or vocabulary is a clear error here,
    not a wall of tensor-size mismatches from deep inside ``load_state_dict``."""
    ours, theirs = task.state_dict(), state.get("state_dict", {})
    problems = [f"missing {k}" for k in sorted(ours.keys() - theirs.keys())]
    problems += [f"unexpected {k}" for k in sorted(theirs.keys() - ours.keys())]
    problems += [
        f"{k}: {tuple(theirs[k].shape)} in the checkpoint, {tuple(ours[k].shape)} here"
        for k in sorted(ours.keys() & theirs.keys())
        if ours[k].shape != theirs[k].shape
    ]
    if problems:
        saved = state.get("attnlab_config", {}).get("task_name", "unknown")
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if problems[3:] else "")
        raise ConfigError(
            f"checkpoint '{path}' (experiment {saved}) does not fit this run's model "
            f"(experiment {experiment}): {shown}. Use the experiment and model/data overrides the "
            f"checkpoint was trained with, or a checkpoint of this one"
        )


def _instantiate_all(group: DictConfig | None, kind: type) -> list:
    """Every ``_target_`` entry of a callbacks/logger group, skipping disabled (null) ones."""
    if not group:
        return []
    built = [instantiate(node) for node in group.values() if node and "_target_" in node]
    return [obj for obj in built if isinstance(obj, kind)]


def find_checkpoint(cfg: DictConfig) -> Path | None:
    """``ckpt_path``: null, a path, or ``last`` = the newest last.ckpt of this task's runs."""
    if not cfg.get("ckpt_path"):
        return None
    if cfg.ckpt_path == "last":
        runs = Path(cfg.paths.output_root) / cfg.task_name
        candidates = sorted(runs.glob("*runs/**/checkpoints/last.ckpt"), key=os.path.getmtime)
        if not candidates:
            raise ConfigError(
                f"ckpt_path=last: no last.ckpt under {runs}; train first, or give ckpt_path=PATH"
            )
        return candidates[-1]
    path = Path(cfg.ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: ckpt_path={cfg.ckpt_path}; check the path")
    return path


def _continue_run(cfg: DictConfig, ckpt: Path) -> None:
    """Point checkpointing and W&B at the run that wrote ``ckpt`` so resuming continues it."""
    checkpoint_cb = cfg.get("callbacks", {}).get("model_checkpoint")
    if checkpoint_cb:
        checkpoint_cb.dirpath = str(ckpt.parent)
    info = ckpt.parent.parent / RUN_INFO
    wandb_cfg = cfg.get("logger", {}).get("wandb")
    if wandb_cfg and info.is_file():
        wandb_cfg.id = json.loads(info.read_text()).get("wandb_id")


def _write_run_info(cfg: DictConfig, loggers: list[Logger]) -> None:
    info = {"task_name": cfg.task_name}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            info["wandb_id"] = logger.experiment.id
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_INFO).write_text(json.dumps(info))


def _close_loggers() -> None:
    """Finish the W&B run even after an exception, so the next multirun job starts clean."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def make_trainer(cfg: DictConfig) -> tuple[L.Trainer, list[Logger]]:
    os.environ.setdefault("WANDB_MODE", "offline")  # never a login prompt; `wandb sync` later
    make_loggers = partial(_instantiate_all, cfg.get("logger"), Logger)
    loggers = online_or_offline(make_loggers(), rebuild=make_loggers)  # W&B unreachable: offline
    callbacks = _instantiate_all(cfg.get("callbacks"), Callback)
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return trainer, loggers


def _children_run_this_job_only() -> None:
    """Under ``-m``, Lightning's DDP launcher starts the other ranks by re-running the command
    line, which would start the whole sweep again in each of them: make that command this job
    alone (its own overrides, no ``-m``), run in this job's folder."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir  # the launcher passes it as hydra.run.dir


def _fit(
    trainer: L.Trainer, task: L.LightningModule, data: L.LightningDataModule, ckpt: Path | None
) -> bool:
    """``trainer.fit``; False where the loss went NaN/inf in a multirun job, so a diverged
    trial is scored as the worst one instead of crashing the sweep (a single run raises)."""
    try:
        trainer.fit(task, datamodule=data, ckpt_path=ckpt)
    except NonFiniteLossError as error:
        if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
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
    """Fit and test one run (``cfg.train``, ``cfg.test``); resume from ``cfg.ckpt_path``."""
    register_resolvers()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    resume_from = find_checkpoint(cfg)
    if resume_from:
        _continue_run(cfg, resume_from)
    datamodule, task = build(cfg, resume_from)
    _children_run_this_job_only()
    print_config(cfg, enabled=cfg.extras.print_config)
    save_config(cfg, Path(cfg.paths.output_dir) / "config_resolved.yaml")
    trainer, loggers = make_trainer(cfg)
    launched_here = [name for name in LAUNCHER_ENV if name not in os.environ]
    best = trainer.checkpoint_callback  # the first ModelCheckpoint: the monitored one
    best = best if isinstance(best, ModelCheckpoint) else None
    try:
        for logger in loggers:
            logger.log_hyperparams(task.run_config)
        if trainer.is_global_zero:
            _write_run_info(cfg, loggers)
        diverged = cfg.train and not _fit(trainer, task, datamodule, resume_from)
        metrics = _metrics(trainer)
        if diverged and cfg.get("optimized_metric"):
            metrics[cfg.optimized_metric] = math.nan  # scored as the worst trial by _optimized
        if cfg.test and not diverged:
            ckpt = (best.best_model_path or None) if best is not None else None
            trainer.test(task, datamodule=datamodule, ckpt_path=ckpt if cfg.train else None)
            metrics.update(_metrics(trainer))
    finally:
        _close_loggers()
        _end_distributed(launched_here)
    best_path = Path(best.best_model_path) if best is not None and best.best_model_path else None
    return RunResult(metrics, Path(cfg.paths.output_dir), best_path, _optimized(cfg, metrics))


# Set by Lightning's DDP launcher in the process that starts the others (see _end_distributed).
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def _end_distributed(launched_here: list[str]) -> None:
    """After a DDP job: drop its process group and the launcher's variables, which would make
    the next job of a sweep believe its other ranks already exist (and wait for them forever)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for name in launched_here:
        os.environ.pop(name, None)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint ``cfg.ckpt_path`` on the test split; returns the test metrics."""
    register_resolvers()
    ckpt = find_checkpoint(cfg)
    if ckpt is None:
        raise ConfigError("eval needs a checkpoint: ckpt_path=PATH (or ckpt_path=last)")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule, task = build(cfg, ckpt)
    trainer, _ = make_trainer(cfg)
    try:
        trainer.test(task, datamodule=datamodule, ckpt_path=str(ckpt))
    finally:
        _close_loggers()
    return _metrics(trainer)


def _optimized(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:  # e.g. trainer.max_steps ended the run before its first validation
        log.warning(
            f"optimized_metric='{name}' was not logged (logged: {sorted(metrics)}); the run "
            "returns no score. Sweeps need it: validate at least once, or pick a logged metric"
        )
        return None
    value = metrics[name]
    if not math.isfinite(value):
        # A NaN return stops hydra-optuna-sweeper's whole study (optuna refuses it, and the
        # sweeper's failure path then raises); a diverged run is the worst result instead.
        mode = cfg.get("optimized_mode", "min")
        worst = math.inf if mode == "min" else -math.inf
        log.warning(f"{name} is {value} (the run diverged): returning {worst} for {mode} sweeps")
        return worst
    return value


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
    checkpoint = read_checkpoint(path)
    if "attnlab_config" not in checkpoint:
        raise ConfigError(f"'{path}' was not written by attnlab's train.py (it has no config)")
    cfg = OmegaConf.create(checkpoint["attnlab_config"])
    datamodule = instantiate(cfg.data)
    datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    task = instantiate(cfg.task, net=instantiate(cfg.model))
    task.load_state_dict(checkpoint["state_dict"])
    return cfg, datamodule, task.eval()
