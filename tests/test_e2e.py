"""End to end: fast_dev_run of every experiment, resuming, eval reproducing a run's test metrics
and the entry points' error messages (multirun sweeps: test_sweeps.py).

Most runs are in-process (``pipeline.train(cfg)`` on a composed config, as ``train.py`` does);
the entry points themselves (``train.py``, ``eval.py``) run as subprocesses where they are what
is tested.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import read_metrics_csv
from omegaconf import OmegaConf

from attnlab import pipeline
from attnlab.errors import ConfigError
from attnlab.hf.bert import minilm_dir
from attnlab.utils.config import CONF_DIR
from attnlab.utils.run_folder import RESUMES, RUN_INFO, continue_run

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))

# A short run with checkpoints: 5 train batches per epoch, 2 val/test batches.
SHORT = [
    "trainer=cpu",
    "++trainer.limit_train_batches=5",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
    "++trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "callbacks.early_stopping=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.token_attention=null",
]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(compose, trainer_spy, experiment: str) -> None:
    overrides = [f"experiment={experiment}", "debug=fdr"]
    if experiment == "tweet_bert" and minilm_dir() is None:
        overrides.append("model.pretrained=null")  # the real weights are an optional install
    result = pipeline.train(compose(overrides))
    trainer = trainer_spy.trainer
    assert trainer.fast_dev_run
    assert trainer.global_step == 1  # one optimizer step on one batch
    assert any(k.startswith("test/") for k in trainer.callback_metrics), trainer.callback_metrics
    assert result is None or math.isfinite(result)
    assert trainer.logger is None  # debug=fdr drops the loggers: nothing to clean up


class _Recorder(L.Callback):
    """Where a (resumed) fit starts: its global step and first epoch."""

    def __init__(self) -> None:
        self.start_step: int | None = None
        self.epochs: list[int] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_step = trainer.global_step

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)


def _ckpt_progress(path: Path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["global_step"], ckpt["epoch"]


def test_resume_continues_the_run_in_its_folder(
    compose, trainer_spy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "outputs" / "tweet_attention" / "runs"
    first, second = runs / "first", runs / "second"
    base = ["experiment=tweet_attention", "logger=wandb", *SHORT]

    pipeline.train(compose([*base, "trainer.max_epochs=2"], output_dir=first))
    last = first / "checkpoints" / "last.ckpt"
    saved_step, saved_epoch = _ckpt_progress(last)
    assert saved_step == 2 * 5 and saved_epoch == 1
    first_id = json.loads((first / RUN_INFO).read_text())["wandb_id"]
    assert first_id
    assert list(first.glob(f"wandb/offline-run-*-{first_id}")), "no offline W&B run written"

    recorder = _Recorder()
    original = trainer_spy._make

    def with_recorder(cfg):
        trainer, loggers = original(cfg)
        trainer.callbacks.append(recorder)
        return trainer, loggers

    trainer_spy._make = with_recorder
    reads, torch_load = [], torch.load

    def counted_load(f, *args, **kwargs):
        name = f if isinstance(f, (str, Path)) else getattr(f, "path", getattr(f, "name", ""))
        reads.append(Path(name).resolve())  # a path, or a file Lightning opened
        return torch_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted_load)
    cfg = compose([*base, "trainer.max_epochs=3", "ckpt_path=last"], output_dir=second)
    result = pipeline.run(cfg)
    assert reads.count(last.resolve()) == 1  # read once: for the tokenizer and for Lightning

    trainer = trainer_spy.trainer
    assert recorder.start_step == saved_step
    assert recorder.epochs == [2]  # resumes at the epoch after the saved one, runs only it
    assert trainer.global_step > saved_step
    assert trainer.global_step == 3 * 5
    # one run, one folder: the resumed run writes everything into the first one
    assert result.run_dir == first.resolve()
    assert Path(trainer.checkpoint_callback.dirpath) == last.parent
    assert _ckpt_progress(last) == (trainer.global_step, 2)
    assert not second.exists()
    # ... and W&B continues the same run, its files beside the first attempt's
    assert cfg.logger.wandb.id == first_id
    assert json.loads((first / RUN_INFO).read_text())["wandb_id"] == first_id
    assert len(list(first.glob(f"wandb/offline-run-*-{first_id}"))) == 2


def test_a_resumed_command_line_run_appends_to_its_folder(
    run_cli, tmp_path: Path, cache_dir
) -> None:
    """Hydra makes a new dated folder for the resumed command; its log and ``.hydra`` files
    move into the run's folder (the log appended, ``.hydra`` under ``resumes/``)."""
    runs = tmp_path / "outputs" / "tweet_attention" / "runs"
    common = ["train.py", "experiment=tweet_attention", "logger=csv", *SHORT]
    common += [f"paths.root_dir={tmp_path}", f"paths.cache_dir={cache_dir}"]
    for epochs, folder, extra in ((1, "first", []), (2, "second", ["ckpt_path=last"])):
        done = run_cli(
            [*common, f"trainer.max_epochs={epochs}", f"hydra.run.dir={runs / folder}", *extra],
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    first = runs / "first"
    assert sorted(p.name for p in runs.iterdir()) == ["first"]
    assert "ckpt_path=last" not in (first / ".hydra" / "overrides.yaml").read_text()
    assert "ckpt_path=last" in (first / RESUMES / "second" / "overrides.yaml").read_text()
    log = (first / "tweet_attention.log").read_text()
    assert log.count("Restored all states") == 1, log[-2000:]  # the resumed fit
    assert log.count("Seed set to") == 2  # the second attempt's first lines moved in too
    resumed = read_metrics_csv(first / "csv" / "version_1" / "metrics.csv")  # a new version
    assert min(int(row["step"]) for row in resumed) >= 5  # ... of the steps after the resume


def test_continue_run_points_checkpoints_and_wandb_at_the_old_run(tmp_path: Path) -> None:
    run = tmp_path / "old"
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.touch()
    (run / RUN_INFO).write_text(json.dumps({"task_name": "t", "wandb_id": "abc123"}))
    cfg = OmegaConf.create(
        {
            "paths": {"output_dir": str(tmp_path / "new")},
            "callbacks": {"model_checkpoint": {"dirpath": "new/checkpoints"}},
            "logger": {"wandb": {"id": None}},
        }
    )
    continue_run(cfg, ckpt)
    assert cfg.paths.output_dir == str(run.resolve())
    assert cfg.callbacks.model_checkpoint.dirpath == str(ckpt.parent)
    assert cfg.logger.wandb.id == "abc123"


def test_resume_last_without_a_checkpoint_says_so(compose) -> None:
    cfg = compose(["experiment=tweet_attention", "ckpt_path=last", "logger=none"])
    with pytest.raises(ConfigError, match=r"no last\.ckpt .*train first, or give ckpt_path=PATH"):
        pipeline.train(cfg)


def test_eval_reproduces_the_runs_test_metrics(tweet_run, compose) -> None:
    assert tweet_run.best_ckpt.is_file()
    cfg = compose(
        ["experiment=tweet_attention", f"ckpt_path={tweet_run.best_ckpt}", "trainer=cpu"],
        config_name="eval",
    )
    metrics = pipeline.evaluate(cfg)
    for name in ("test/f1", "test/acc", "test/loss"):
        assert metrics[name] == pytest.approx(tweet_run.metrics[name], abs=1e-6), name


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (["experiment=tweet_mean"], r"experiment tweet_attention\) does not fit .*tweet_mean"),
        (["experiment=tweet_attention", "model.embed_dim=64"], r"\(.*, 256\) in the checkpoint"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_a_clear_error(
    tweet_run, compose, overrides: list[str], problem: str
) -> None:
    """Another experiment's checkpoint, or one of another model size, is named as such."""
    cfg = compose([*overrides, f"ckpt_path={tweet_run.best_ckpt}"], config_name="eval")
    with pytest.raises(ConfigError, match=problem):
        pipeline.evaluate(cfg)


def test_eval_entry_point_names_a_missing_checkpoint(run_cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    result = run_cli(
        ["eval.py", "experiment=tweet_attention", f"ckpt_path={missing}", "logger=none"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "checkpoint not found" in result.stderr and str(missing) in result.stderr


def test_unknown_experiment_lists_the_available_ones(run_cli, tmp_path: Path) -> None:
    result = run_cli(["train.py", "experiment=nope"], cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert "nope" in result.stderr
    for name in EXPERIMENTS:
        assert name in result.stderr, f"available experiment {name} not listed"
    assert not (tmp_path / "outputs").exists()


def test_train_entry_point_reports_a_missing_data_file(run_cli, tmp_path: Path) -> None:
    missing = tmp_path / "tweets.csv"
    result = run_cli(
        [
            "train.py",
            "experiment=tweet_attention",
            "logger=none",
            f"data.source.files={missing}",
            f"paths.root_dir={tmp_path}",
        ],
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"data file not found: '{missing}' (files.train); check the path" in result.stderr
