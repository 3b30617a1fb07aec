"""One Hydra job among many: the jobs of a ``-m`` sweep, the ranks of a DDP run, and the score a
job returns to its sweeper."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)

# Set by Lightning's DDP launcher in the process that starts the others (see `distributed_job`).
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def in_multirun() -> bool:
    """Whether this process runs one job of a ``-m`` sweep."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def children_run_this_job_only() -> None:
    """Under ``-m``, Lightning's DDP launcher starts the other ranks by re-running the command
    line, which would start the whole sweep again in each of them: make that command this job
    alone (its own overrides, no ``-m``), run in this job's folder."""
    if not in_multirun():
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir  # the launcher passes it as hydra.run.dir


@contextmanager
def distributed_job() -> Iterator[None]:
    """Around a job that may start DDP ranks: afterwards, drop its process group and the
    launcher's variables, which would make the next job of a sweep believe its other ranks
    already exist (and wait for them forever)."""
    launched_here = [name for name in LAUNCHER_ENV if name not in os.environ]
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name in launched_here:
            os.environ.pop(name, None)


def optimized(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """``cfg.optimized_metric`` as the job returns it to a sweeper: None when it was not logged,
    the worst value for the sweep's direction when the run diverged."""
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
