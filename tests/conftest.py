"""Shared fixtures: a safe environment, in-process runs of the pipeline, one shared tweet run.

Nothing a test runs may write into the repository's ``outputs/``: every run gets its own root
under pytest's tmp dir, and only the trained-tokenizer cache is shared (session-wide) to save
the seconds WordPiece training takes.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from attnlab import pipeline
from attnlab.api import job_config

REPO_ROOT = Path(__file__).resolve().parents[1]

# A fast budget for the shared tweet run: enough for attention pooling to clearly learn.
SHARED_RUN_EPOCHS = 6

# The models here are tiny: one intra-op thread is as fast, and on a shared or busy 2-core
# machine torch's default (one thread per core) oversubscribes and runs ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for the subprocess runs
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session", autouse=True)
def _safe_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No W&B network or login, no writes to $HOME or the repo, for this process and children."""
    wandb_home = tmp_path_factory.mktemp("wandb")
    settings = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DIR": str(wandb_home),
        "WANDB_CACHE_DIR": str(wandb_home / "cache"),
        "WANDB_CONFIG_DIR": str(wandb_home / "config"),
        "WANDB_DATA_DIR": str(wandb_home / "data"),
        "ATTNLAB_ROOT": str(tmp_path_factory.mktemp("attnlab_root")),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained-tokenizer cache, shared by every run of the session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _clean_hydra() -> None:
    """compose_config and HydraConfig are process-global: leave them as we found them."""
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


def compose_run(
    overrides: Sequence[str],
    root: Path,
    cache: Path,
    config_name: str = "train",
    output_dir: Path | None = None,
) -> DictConfig:
    """The config ``train.py``/``eval.py`` would build, with every write under ``root`` and
    the run folder ``output_dir`` (default ``root/run``)."""
    settings = [f"paths.root_dir={root}", f"paths.cache_dir={cache}", "extras.print_config=false"]
    return job_config([*overrides, *settings], config_name, output_dir=output_dir or root / "run")


@pytest.fixture
def compose(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """``compose(overrides, config_name=..., output_dir=...)`` rooted in this test's tmp_path."""

    def _compose(
        overrides: Sequence[str], config_name: str = "train", output_dir: Path | None = None
    ) -> DictConfig:
        return compose_run(overrides, tmp_path, cache_dir, config_name, output_dir)

    return _compose


class TrainerSpy:
    """Wraps ``pipeline.make_trainer`` to keep every trainer a run builds (for assertions)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trainers: list[Any] = []
        self._make = pipeline.make_trainer
        monkeypatch.setattr(pipeline, "make_trainer", self)

    def __call__(self, cfg: DictConfig) -> tuple[Any, list]:
        trainer, loggers = self._make(cfg)
        self.trainers.append(trainer)
        return trainer, loggers

    @property
    def trainer(self) -> Any:
        return self.trainers[-1]

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.trainer.callback_metrics.items()}


@pytest.fixture
def trainer_spy(monkeypatch: pytest.MonkeyPatch) -> TrainerSpy:
    return TrainerSpy(monkeypatch)


def run_command(
    args: Sequence[str], cwd: Path, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python <args>`` from ``cwd``: a ``.py`` file relative to the repository root, or a
    console script of the installed package (``attnlab-explain``)."""
    script, *rest = args
    command = (
        [sys.executable, str(REPO_ROOT / script)]
        if script.endswith(".py")
        else [str(Path(sys.executable).parent / script)]
    )
    return subprocess.run(
        [*command, *rest],
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(["train.py", "experiment=..."], cwd=tmp_path)``: a real entry-point run
    (session-wide, so module-scoped fixtures can share one run)."""
    return run_command


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, to call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(
        f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_metrics_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@dataclass
class TweetRun:
    """A finished ``experiment=tweet_attention`` run: where it wrote, what it measured."""

    cfg: DictConfig
    output_dir: Path
    metrics: dict[str, float]  # the trainer's callback metrics after fit + test
    best_ckpt: Path
    datamodule: Any

    def epoch_rows(self) -> list[dict[str, str]]:
        """metrics.csv rows that carry the epoch-level training loss, in epoch order."""
        rows = read_metrics_csv(self.output_dir / "csv" / "version_0" / "metrics.csv")
        rows = [r for r in rows if r.get("train/loss_epoch")]
        return sorted(rows, key=lambda r: int(r["epoch"]))


@pytest.fixture(scope="session")
def tweet_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> TweetRun:
    """One real training run on the embedded tweets, shared by the learning, eval and explain
    tests: ``experiment=tweet_attention logger=csv`` for ``SHARED_RUN_EPOCHS`` epochs."""
    root = tmp_path_factory.mktemp("tweet_run")
    output_dir = root / "outputs" / "tweet_attention" / "runs" / "shared"
    cfg = compose_run(
        [
            "experiment=tweet_attention",
            "logger=csv",
            "trainer=cpu",
            f"trainer.max_epochs={SHARED_RUN_EPOCHS}",
            "callbacks.early_stopping=null",
            "callbacks.rich_progress_bar=null",
            "callbacks.token_attention.every_n_epochs=3",
            "++trainer.enable_progress_bar=false",
        ],
        root,
        cache_dir,
        output_dir=output_dir,
    )
    monkeypatch = pytest.MonkeyPatch()
    spy = TrainerSpy(monkeypatch)
    try:
        pipeline.train(cfg)
    finally:
        monkeypatch.undo()
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
    trainer = spy.trainer
    best = Path(trainer.checkpoint_callback.best_model_path)
    return TweetRun(cfg, output_dir, spy.metrics(), best, trainer.datamodule)


def digit_folder(root: Path, size: int, per_class: int) -> Path:
    """``per_class`` embedded digits of each class, downscaled to ``size`` pixels, as
    ``root/digits/CLASS/N.png``: a user's own small image folder."""
    import numpy as np
    import PIL.Image

    from attnlab.data.sources import EMBEDDED_DIR

    with np.load(EMBEDDED_DIR / "mnist_5k.npz") as raw:
        images, labels = raw["images"], raw["labels"]
    folder = root / "digits"
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for n, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            image = PIL.Image.fromarray(images[index]).resize((size, size), PIL.Image.BILINEAR)
            image.save(folder / str(label) / f"{n}.png")
    return folder
