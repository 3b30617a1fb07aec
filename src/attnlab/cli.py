"""The Hydra mains behind ``train.py`` / ``eval.py`` and the ``attnlab-train`` / ``attnlab-eval``
console scripts.

The configs ship inside the package (``pkg://attnlab.conf``), so an installed wheel runs from
any folder; ``--config-dir DIR`` (or ``hydra.searchpath=[file://DIR]``) adds a user's own
``experiment/``, ``model/``, ``data/`` ... files to them.
"""

from __future__ import annotations

import logging
from types import ModuleType

import hydra
from omegaconf import DictConfig

from attnlab.errors import command
from attnlab.utils.config import CONF_MODULE
from attnlab.utils.schema import register_schemas

register_schemas()  # conf/train.yaml and eval.yaml start from them


def _pipeline() -> ModuleType:
    """``attnlab.pipeline``, imported once the config is composed, so a config mistake is
    reported in a second rather than after Lightning's import. Lightning's messages then go
    through the logging Hydra configured (the console and the run's log file) instead of also
    through Lightning's own console handler, which would print each of them twice."""
    from attnlab import pipeline

    logging.getLogger("lightning").handlers.clear()
    return pipeline


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_MODULE}", config_name="train")
def _train(cfg: DictConfig) -> float | None:
    return _pipeline().train(cfg)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_MODULE}", config_name="eval")
def _evaluate(cfg: DictConfig) -> dict[str, float]:
    return _pipeline().evaluate(cfg)


@command
def train_main() -> None:
    """``attnlab-train experiment=NAME [overrides]``."""
    _train()


@command
def eval_main() -> None:
    """``attnlab-eval experiment=NAME ckpt_path=PATH [overrides]``."""
    _evaluate()
