"""Typed schemas of the run configs (Hydra structured configs).

``conf/train.yaml`` and ``conf/eval.yaml`` start from these dataclasses, so a top-level key
that is misspelt in an experiment or a local file (``optimised_metric:``) is an error when the
config is composed, and a value of the wrong type (``seed: abc``) too. The groups (``data``,
``model``, ``task``...) hold ``_target_`` nodes whose keys are checked against the target's own
signature instead (``config_checks.check_targets``): one schema per class, kept by the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    output_root: str = MISSING
    output_dir: str = MISSING
    cache_dir: str = MISSING


@dataclass
class ExtrasConfig:
    print_config: bool = True


@dataclass
class RunConfig:
    task_name: str = MISSING
    run_name: str = MISSING
    tags: list[str] = field(default_factory=list)
    ckpt_path: str | None = None
    seed: int | None = None
    optimized_metric: str | None = None
    optimized_mode: str = "min"
    data: Any = MISSING
    model: Any = MISSING
    task: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = None
    logger: Any = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    extras: ExtrasConfig = field(default_factory=ExtrasConfig)


@dataclass
class TrainConfig(RunConfig):
    train: bool = True
    test: bool = True


@dataclass
class EvalConfig(RunConfig):
    ckpt_path: str = MISSING  # type: ignore[assignment]  # eval needs one


def register_schemas() -> None:
    """Make ``train_schema`` / ``eval_schema`` available to the defaults lists of conf/."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="eval_schema", node=EvalConfig)
