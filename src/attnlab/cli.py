"""Hydra mains behind ``train.py`` / ``eval.py`` and the ``attnlab-train`` / ``attnlab-eval``
console scripts. Configs live in the repository's ``conf/`` folder."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from attnlab import pipeline
from attnlab.utils.schema import register_schemas

CONF = str(Path(__file__).resolve().parents[2] / "conf")  # <repo>/conf (editable install)
register_schemas()  # conf/train.yaml and eval.yaml start from them


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    return pipeline.train(cfg)


@hydra.main(version_base="1.3", config_path=CONF, config_name="eval")
def eval_main(cfg: DictConfig) -> dict[str, float]:
    return pipeline.evaluate(cfg)
