"""Sweeps: a grid multirun and its summary table, an Optuna search that outlives failed trials, the
SLURM launcher's sbatch script, and the W&B sweep files checked against their experiments."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest
import yaml
from conftest import read_metrics_csv
from hydra.utils import instantiate
from omegaconf import OmegaConf

from attnlab.resolvers import register_resolvers
from attnlab.tools import summarize
from attnlab.utils.config import CONF_DIR, compose_config
from attnlab.utils.jobs import optimized

# No pictures, no progress bars: the sweeps here only need metrics.
QUIET = [
    "callbacks.token_attention=null",
    "callbacks.rich_progress_bar=null",
    "++trainer.enable_progress_bar=false",
    "extras.print_config=false",
]
MAIN_EXPERIMENTS = {"tweet_attention", "lm_transformer", "translation_attention", "bert_mlm", "vit"}
WANDB_SWEEPS = sorted((CONF_DIR / "wandb_sweeps").glob("*.yaml"))


def _last(rows: list[dict[str, str]], column: str) -> float:
    return float([row[column] for row in rows if row.get(column)][-1])


@pytest.fixture(scope="module")
def multirun(run_cli, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """The sweep dir of ``train.py -m experiment=tweet_attention model.score=dot,cosine``: two
    epochs of a few batches each, CSV logs; shared by the multirun and the summary tests."""
    root = tmp_path_factory.mktemp("multirun")
    sweep = root / "sweep"
    result = run_cli(
        [
            "train.py",
            "-m",
            "experiment=tweet_attention",
            "model.score=dot,cosine",
            "logger=csv",
            "debug=limit",
            "trainer.max_epochs=2",
            *QUIET,
            f"hydra.sweep.dir={sweep}",
            f"paths.root_dir={root}",
            f"paths.cache_dir={cache_dir}",
        ],
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


def test_multirun_over_score_functions(multirun: Path) -> None:
    jobs = sorted(p for p in multirun.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    scores = []
    for job in jobs:
        resolved = yaml.safe_load((job / "config_resolved.yaml").read_text())
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"model.score={resolved['model']['score']}" in overrides
        scores.append(resolved["model"]["score"])
    assert scores == ["dot", "cosine"]


def test_summarize_tabulates_every_job(
    multirun: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "summary.csv"
    summarize.main([str(multirun), f"out={out}"])
    printed = capsys.readouterr().out
    table = list(csv.DictReader(out.open()))

    assert [(row["job"], row["model.score"]) for row in table] == [("0", "dot"), ("1", "cosine")]
    assert "trainer.max_epochs" not in table[0]  # the same in every job: printed once, above
    assert "common overrides: " in printed and " trainer.max_epochs=2 " in printed
    for row in table:
        log = read_metrics_csv(multirun / row["job"] / "csv" / "version_0" / "metrics.csv")
        val_f1 = [float(r["val/f1"]) for r in log if r["val/f1"]]
        assert len(val_f1) == 2  # one per epoch: the table must hold the last, not the first
        for column in ("val/f1", "val/loss", "test/f1", "test/acc"):
            assert float(row[column]) == pytest.approx(_last(log, column)), column
        assert f"| {row['job']} | {row['model.score']} | {float(row['test/acc']):.4g} |" in printed
    assert out.with_suffix(".png").stat().st_size > 0


def test_jobs_differing_only_by_seed_are_one_row_with_mean_std_and_n(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from scipy.stats import ttest_ind

    f1 = {"dot": [0.60, 0.62, 0.61], "mlp": [0.66, 0.65, 0.67]}
    rows = [
        {"job": str(3 * i + j), "model.score": score, "seed": str(j + 1), "val/f1": value}
        for i, (score, values) in enumerate(f1.items())
        for j, value in enumerate(values)
    ]
    summary = summarize.report_seeds(
        rows, ["model.score", "seed"], ["val/f1"], "val/f1", tmp_path / "summary.csv"
    )
    assert [(r["model.score"], r["n"]) for r in summary] == [("dot", 3.0), ("mlp", 3.0)]
    assert summary[0]["val/f1"] == pytest.approx(0.61)
    assert summary[0]["val/f1 std"] == pytest.approx(0.01)
    printed = capsys.readouterr().out
    assert "| dot | 3 | 0.61 ± 0.01 |" in printed
    p = ttest_ind(f1["dot"], f1["mlp"], equal_var=False).pvalue
    assert f"Welch's t-test p = {p:.3g}: the difference is larger than the spread" in printed
    saved = list(csv.DictReader((tmp_path / "summary_seeds.csv").open()))
    assert [float(r["val/f1 std"]) for r in saved] == pytest.approx([0.01, 0.01])


def test_summary_plot_averages_the_jobs_of_each_swept_value(monkeypatch, tmp_path: Path) -> None:
    """Numbers on a line (sorted, log axis over decades), one per ``by`` value; names as bars."""
    drawn = {}

    def lines(series, path, xlabel, ylabel, log_x=False, log_y=False):
        drawn.update(series=series, log_x=log_x)

    def bars(labels, series, *args, **kwargs):
        drawn.update(labels=labels, series=series)

    monkeypatch.setattr(summarize, "plot_lines", lines)
    monkeypatch.setattr(summarize, "plot_bars", bars)
    rows = [
        {"lr": "0.01", "score": "dot", "val/f1": 0.5},
        {"lr": "0.0001", "score": "dot", "val/f1": 0.3},
        {"lr": "0.01", "score": "mlp", "val/f1": 0.7},
        {"lr": "0.01", "score": "mlp", "val/f1": 0.6},
        {"lr": "0.0001", "score": "mlp", "val/f1": ""},  # failed: no metric
    ]
    summarize.plot(rows, "val/f1", "lr", "score", tmp_path / "p.png")
    assert drawn["series"] == {
        "score=dot": ([0.0001, 0.01], [0.3, 0.5]),
        "score=mlp": ([0.01], [pytest.approx(0.65)]),
    }
    assert drawn["log_x"]
    summarize.plot(rows, "val/f1", "score", None, tmp_path / "p.png")
    assert drawn["labels"] == ["dot", "mlp"]
    assert drawn["series"] == {"val/f1": [pytest.approx(0.4), pytest.approx(0.65)]}


@pytest.mark.parametrize(("mode", "worst"), [("max", -math.inf), ("min", math.inf)])
def test_a_diverged_run_returns_the_worst_value(mode: str, worst: float) -> None:
    """NaN would stop an Optuna study; the worst value for the direction ranks the trial last."""
    cfg = OmegaConf.create({"optimized_metric": "val/loss", "optimized_mode": mode})
    assert optimized(cfg, {"val/loss": math.nan}) == worst
    assert optimized(cfg, {"val/loss": math.inf if mode == "max" else -math.inf}) == worst
    assert optimized(cfg, {"val/loss": 0.5}) == 0.5


def test_optuna_search_outlives_failed_trials(run_cli, tmp_path: Path, cache_dir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    result = run_cli(
        [
            "train.py",
            "hparams_search=tweet_attention_optuna",
            "hydra.sweeper.n_trials=3",
            "model.score=choice(dot,bogus)",  # bogus raises when the model is built
            "logger=csv",
            "debug=limit",
            "trainer.max_epochs=1",
            *QUIET,
            f"hydra.sweep.dir={sweep}",
            f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 3
    done = [job for job in jobs if (job / "config_resolved.yaml").is_file()]
    # The sampler's seed (the config's seed, 1234) picks bogus for some trials, dot for others.
    assert 0 < len(done) < len(jobs), result.stdout[-3000:]
    assert "unknown score function 'bogus'" in result.stdout + result.stderr

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["model.score"] == "dot"
    assert set(best["best_params"]) == {
        "task.optimizer.lr",
        "model.embed_dim",
        "model.dropout",
        "model.score",
    }
    finals = [
        _last(read_metrics_csv(job / "csv" / "version_0" / "metrics.csv"), "val/f1") for job in done
    ]
    assert best["best_value"] == pytest.approx(max(finals))  # val/f1, maximised


class _Submitted(Exception):
    """Raised in place of submitting: the test only needs the executor as it was configured."""


def test_slurm_launcher_writes_the_sbatch_options(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    submitit = pytest.importorskip("submitit")
    fake_bin = tmp_path / "bin"  # submitit's SLURM executor insists on finding srun
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executors = []

    def capture(self, submissions):
        executors.append(self._executor)
        raise _Submitted

    monkeypatch.setattr(submitit.AutoExecutor, "_internal_process_submissions", capture)
    cfg = compose_config(
        [
            "experiment=lm_transformer",
            "trainer=ddp",
            "trainer.num_nodes=2",
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=4",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        hydra=True,
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(_Submitted):
        launcher.launch([["model.num_layers=4"]], initial_job_idx=0)

    (executor,) = executors
    script = executor._make_submission_file_text("python -m submitit.core._submit", "uid")
    for option in (
        "partition=gpu",
        "nodes=2",  # from trainer.num_nodes
        "gpus-per-node=4",
        "ntasks-per-node=4",  # one Lightning process per GPU
        "cpus-per-task=8",
        "time=240",
        "signal=USR2@120",  # submitit's cue to requeue a preempted job
        "requeue",
        "job-name=lm_transformer",
    ):
        assert f"#SBATCH --{option}\n" in script, option
    assert executor.max_num_timeout == 0


def test_wandb_sweeps_cover_the_main_experiments() -> None:
    assert {p.stem for p in WANDB_SWEEPS} == MAIN_EXPERIMENTS


@pytest.mark.parametrize("path", WANDB_SWEEPS, ids=lambda p: p.stem)
def test_wandb_sweep_matches_its_experiment(path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    experiment = compose_config([f"experiment={path.stem}"])
    assert sweep["metric"] == {
        "name": experiment.optimized_metric,
        "goal": f"{experiment.optimized_mode}imize",
    }
    assert sweep["command"][:2] == ["${env}", "WANDB_MODE=online"]
    assert f"experiment={path.stem}" in sweep["command"]
    assert sweep["command"][-1] == "${args_no_hyphens}"
    # One trial's arguments (each parameter's first value) compose and land in the config.
    trial = {
        k: spec["values"][0] if "values" in spec else spec["min"]
        for k, spec in sweep["parameters"].items()
    }
    composed = compose_config([f"experiment={path.stem}", *(f"{k}={v}" for k, v in trial.items())])
    for key, value in trial.items():
        assert OmegaConf.select(composed, key, throw_on_resolution_failure=False) == value, key


def test_wandb_groups_the_jobs_of_a_sweep(compose, tmp_path: Path) -> None:
    """One W&B group per sweep (named after its folder), the experiment for single runs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    cfg = compose(["experiment=tweet_attention"])  # a single run: HydraConfig in RUN mode
    register_resolvers()
    assert cfg.logger.wandb.group == "tweet_attention"
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN
        hydra_cfg.sweep.dir = str(tmp_path / "2026-11-27_04-30-00")
    assert cfg.logger.wandb.group == "tweet_attention/2026-11-27_04-30-00"
