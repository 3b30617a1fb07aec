"""The Hydra mains behind ``train.py`` / ``eval.py`` and the ``attnlab-train`` / ``attnlab-eval``
console scripts.

The configs ship inside the package (``pkg://attnlab.conf``), so an installed wheel runs from
any folder; ``--config-dir DIR`` (or ``hydra.searchpath=[file://DIR]``) adds a user's own
``experiment/``, ``model/``, ``data/`` ... files to them.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from attnlab import pipeline
from attnlab.errors import command
from attnlab.utils.config import CONF_MODULE
from attnlab.utils.schema import register_schemas

register_schemas()  # conf/train.yaml and eval.yaml start from them


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_MODULE}", config_name="train")
def _train(cfg: DictConfig) -> float | None:
    return pipeline.train(cfg)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_MODULE}", config_name="eval")
def _evaluate(cfg: DictConfig) -> dict[str, float]:
    return pipeline.evaluate(cfg)


@command
def train_main() -> None:
    """``attnlab-train experiment=NAME [overrides]``."""
    _train()


@command
def eval_main() -> None:
    """``attnlab-eval experiment=NAME ckpt_path=PATH [overrides]``."""
    _evaluate()
