"""The config's resolvers: ``${datamodule:ATTR}``, ``${run_name:...}``, ``${run_group:...}``,
``${gpu_precision:}`` and ``${pretrained_vocab:...}``.

``${datamodule:vocab_size}`` is how a model config reads what only the data knows (vocabulary
size, pad id, class count): ``pipeline.build`` resolves the config while ``bound_datamodule``
holds the DataModule it has just built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from attnlab.data.tokenization import pretrained_vocab
from attnlab.errors import ConfigError

_BOUND: dict[str, L.LightningDataModule] = {}


def register_resolvers() -> None:
    """Every resolver of the configs, registered once per process."""
    resolvers = {
        "datamodule": _datamodule_attr,
        "run_name": lambda task, overrides: f"{task}:{overrides}" if overrides else task,
        "run_group": run_group,
        "gpu_precision": gpu_precision,
        "pretrained_vocab": pretrained_vocab,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


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
    """``${datamodule:ATTR}`` reads ``datamodule`` while this is open."""
    _BOUND["datamodule"] = datamodule
    try:
        yield
    finally:
        _BOUND.pop("datamodule", None)
