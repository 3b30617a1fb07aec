"""Installed anywhere, extended without forking: the wheel carries its configs and console
scripts, a user's config folder and module join the run, and the Python API trains and loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, run_command

import attnlab
from attnlab.utils.config import CONF_DIR

# A model of the user's own, in their own module: bag of words, mean of the token embeddings.
USER_MODULE = """
import torch
from torch import nn


class BagOfWords(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.out = nn.Linear(embed_dim, num_classes)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        mean = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        weights = attention_mask.float() / attention_mask.sum(1, keepdim=True).clamp(min=1)
        return self.out(mean), weights
"""
USER_MODEL = """# model/bag_of_words.yaml in the user's own config folder
_target_: my_models.BagOfWords
vocab_size: ${datamodule:vocab_size}
num_classes: ${datamodule:num_classes}
embed_dim: 16
"""
USER_EXPERIMENT = """# @package _global_
defaults:
  - override /data: tweets
  - override /model: bag_of_words
  - override /task: classification
task_name: bag_of_words
optimized_metric: val/f1
optimized_mode: max
"""


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp/conf/{experiment,model}/`` and ``tmp/code/my_models.py`` on PYTHONPATH."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "experiment" / "bag_of_words.yaml").write_text(USER_EXPERIMENT)
    (conf / "model" / "bag_of_words.yaml").write_text(USER_MODEL)
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def test_a_user_experiment_with_a_user_model_runs_from_the_command_line(
    user_folder: Path, cache_dir: Path
) -> None:
    (user_folder / "work").mkdir()
    result = run_command(
        ["attnlab-train", "--config-dir", str(user_folder / "conf"), "experiment=bag_of_words"]
        + [f"paths.cache_dir={cache_dir}", "debug=fdr"],
        cwd=user_folder / "work",
        env={"ATTNLAB_ROOT": "."},  # the default: where you launch (the tests set a tmp folder)
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "BagOfWords" in result.stdout  # the model summary names the user's class
    assert (user_folder / "work" / "outputs" / "bag_of_words" / "runs").is_dir()  # ./outputs


def test_the_python_api_trains_a_user_experiment_and_loads_it_back(
    user_folder: Path, cache_dir: Path
) -> None:
    overrides = [f"paths.root_dir={user_folder}", f"paths.cache_dir={cache_dir}", "logger=none"]
    overrides += ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "extras.print_config=0"]
    run = attnlab.train("bag_of_words", overrides, config_dir=user_folder / "conf")
    assert run.run_dir.parent == user_folder / "outputs" / "bag_of_words" / "runs"
    assert {"val/f1", "test/f1", "test/acc"} <= set(run.metrics)
    assert run.optimized == run.metrics["val/f1"]
    assert run.best_checkpoint is not None and run.best_checkpoint.parent.parent == run.run_dir

    trained = attnlab.load(run.best_checkpoint)
    assert type(trained.model).__name__ == "BagOfWords" and not trained.task.training
    batch = trained.data.encode(["what a great day", "this is awful"])
    with torch.no_grad():
        logits, _ = trained.task(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (2, len(trained.datamodule.class_names))
    assert trained.tokenizer is trained.datamodule.tokenizer is trained.data.tokenizer
    assert trained.config.task_name == "bag_of_words"
    tested = attnlab.evaluate(
        run.best_checkpoint, "bag_of_words", overrides, config_dir=user_folder / "conf"
    )
    assert tested["test/f1"] == pytest.approx(run.metrics["test/f1"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the project (setuptools leaves a build/ folder behind,
    whose stale files would go into the next wheel)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "local")
    shutil.copytree(REPO_ROOT / "src", source / "src", ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("attnlab-*.whl")
    return path


def test_the_wheel_carries_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"attnlab/conf/{p.relative_to(CONF_DIR)}" for p in CONF_DIR.rglob("*.yaml")}
    configs = {c for c in configs if "/local/" not in c}  # a machine's own, git-ignored
    assert configs and configs <= names, sorted(configs - names)[:5]


def test_the_installed_wheel_trains_and_runs_its_tools_from_an_empty_folder(
    wheel: Path, tweet_run, tmp_path: Path, cache_dir: Path
) -> None:
    """A fresh venv with the wheel installed non-editable (the dependencies, CPU torch
    included, come from this environment through a .pth file: no download)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "dependencies.pth").write_text(ours + "\n")  # appended after its own site
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
        + ["--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": "", "HYDRA_FULL_ERROR": "0", "ATTNLAB_ROOT": "."}
    found = subprocess.run(
        [python, "-c", "import attnlab.cli; print(attnlab.cli.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(venv) in found and str(REPO_ROOT / "src") not in found  # the wheel, not the clone

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / args[0]), *args[1:]],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    trained = run("attnlab-train", "experiment=tweet_attention", "debug=fdr")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert (empty / "outputs" / "tweet_attention" / "runs").is_dir()
    explained = run("attnlab-explain", f"ckpt_path={tweet_run.best_ckpt}", "text=what a day")
    assert explained.returncode == 0, explained.stderr[-3000:]
    assert explained.stdout.count("prediction: ") == 1
    failed = run("attnlab-train", "model=nope")
    assert failed.returncode == 2 and "attnlab: error:" in failed.stderr
