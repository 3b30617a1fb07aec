"""The Python API, for notebooks and other programs: what the command line does, as calls.

    import attnlab
    run = attnlab.train("tweet_attention", ["trainer.max_epochs=2"])
    run.metrics["test/f1"], run.run_dir, run.best_checkpoint
    trained = attnlab.load(run.best_checkpoint)
    trained.task, trained.tokenizer, trained.config

A run composes the same config as ``attnlab-train experiment=NAME overrides...`` (``config_dir``
adds a folder of your own configs, as ``--config-dir`` does) and writes the same run folder,
under ``./outputs`` unless ``paths.root_dir`` says otherwise. Mistakes raise ``ConfigError`` /
``DataError`` with the message the command line prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from attnlab import pipeline
from attnlab.data.interface import DataInterface
from attnlab.pipeline import RunResult
from attnlab.resolvers import register_resolvers
from attnlab.utils.config import compose_config


def job_config(
    overrides: Sequence[str] = (),
    config_name: str = "train",
    config_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> DictConfig:
    """The config a command-line job gets, with Hydra's run-time values set as ``@hydra.main``
    sets them (the run folder, ``${hydra:...}``), and the ``hydra`` node dropped."""
    overrides = list(overrides)
    if config_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{Path(config_dir).expanduser().resolve()}]")
    register_resolvers()
    cfg = compose_config(overrides, config_name=config_name, hydra=True)
    run_dir = Path(output_dir) if output_dir is not None else Path(cfg.hydra.run.dir)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir.resolve())
        cfg.hydra.run.dir = str(run_dir)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _with_experiment(experiment: str | None, overrides: Sequence[str]) -> list[str]:
    return [*([f"experiment={experiment}"] if experiment else []), *overrides]


def train(
    experiment: str | None = None,
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
) -> RunResult:
    """Train (and test) ``experiment`` with Hydra-style ``overrides``; returns its metrics, run
    folder and best checkpoint."""
    return pipeline.run(job_config(_with_experiment(experiment, overrides), config_dir=config_dir))


def evaluate(
    checkpoint: str | Path,
    experiment: str | None = None,
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
) -> dict[str, float]:
    """Test ``checkpoint`` on the test split (as ``attnlab-eval``); returns the test metrics."""
    overrides = [*_with_experiment(experiment, overrides), f"ckpt_path={checkpoint}"]
    return pipeline.evaluate(job_config(overrides, "eval", config_dir=config_dir))


@dataclass
class Trained:
    """A trained run from its checkpoint alone, in eval mode, ready for inference."""

    config: DictConfig  # the resolved config it was trained with
    datamodule: L.LightningDataModule  # holds the tokenizer(s) and class names, no data read
    task: L.LightningModule  # the LightningModule; ``task.net`` is the plain torch.nn model

    @property
    def model(self) -> Any:
        return self.task.net

    @property
    def data(self) -> DataInterface:
        """What the model needs of the data: ``encode``/``decode``, tokenizer(s), class names."""
        return self.task.data

    @property
    def tokenizer(self) -> Any:
        """The input tokenizer (the source side for translation; None for images)."""
        data = self.data
        return getattr(data, "tokenizer", None) or getattr(data, "src_tokenizer", None)


def load(checkpoint: str | Path) -> Trained:
    """The model, tokenizer and config of a checkpoint written by a training run."""
    return Trained(*pipeline.load_checkpoint(checkpoint))
