"""The Vision Transformer learns the embedded digits, its pictures are written, and the per-step
schedules (one-cycle, warm-up + cosine) span exactly the run, their length filled in by the task.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import read_metrics_csv
from torch import nn

from attnlab import pipeline
from attnlab.tasks.classification import ClassificationTask
from attnlab.tasks.schedules import warmup_cosine

EPOCHS = 10  # ~90% test accuracy (seeds 1, 2, 1234), ~20 s on one core
CHANCE = 0.1  # ten balanced classes


# A smaller, faster cut of experiment=vit: 7x7 patches (16 + 1 tokens), 3 layers.
# Epochs as given (trainer.min_steps would stretch them to 800 steps).
FAST = ["experiment=vit", "trainer=cpu", "model.patch_size=7", "model.num_layers=3"]
FAST += ["trainer.min_steps=null"]


def test_vit_learns_the_embedded_digits(compose, trainer_spy, tmp_path: Path) -> None:
    cfg = compose(
        [
            *FAST,
            "logger=csv",
            f"trainer.max_epochs={EPOCHS}",
            "callbacks.rich_progress_bar=null",
            "++trainer.enable_progress_bar=false",
            f"callbacks.vit_pictures.every_n_epochs={EPOCHS - 1}",
        ]
    )
    pipeline.train(cfg)
    metrics = trainer_spy.metrics()
    assert metrics["test/acc"] > CHANCE + 0.7, metrics
    assert metrics["test/f1"] > CHANCE + 0.7, metrics

    run = tmp_path / "run"
    rows = read_metrics_csv(run / "csv" / "version_0" / "metrics.csv")
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(losses) == EPOCHS and losses[-1] < 0.5 * losses[0], losses
    # one-cycle over exactly the run: up to the peak, down to max_lr / 25 / 1000 at the end
    lrs = [float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")]
    steps = trainer_spy.trainer.global_step
    assert steps == EPOCHS * math.ceil(4050 / 128)
    assert max(lrs) == pytest.approx(cfg.task.optimizer.lr, rel=0.02)
    assert lrs[-1] < cfg.task.optimizer.lr / 1000

    for picture in (
        "attention_rollout/epoch000.png",
        f"attention_rollout/epoch{EPOCHS - 1:03d}.png",
    ):
        assert (run / picture).stat().st_size > 10_000, picture
    assert (run / "position_embeddings.png").is_file()
    assert (run / "confusion_matrix.png").is_file()

    # the checkpoint alone (normalisation and class names inside) reproduces the test metrics
    best = trainer_spy.trainer.checkpoint_callback.best_model_path
    eval_cfg = compose([*FAST, f"ckpt_path={best}"], config_name="eval", output_dir=tmp_path / "e")
    evaluated = pipeline.evaluate(eval_cfg)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def _task(scheduler: partial) -> ClassificationTask:
    return ClassificationTask(
        num_classes=2,
        net=nn.Linear(2, 2),
        optimizer=partial(torch.optim.AdamW, lr=1.0),
        scheduler=scheduler,
        scheduler_interval="step",
    )


class _Trainer:
    estimated_stepping_batches = 40


@pytest.mark.parametrize(
    "scheduler",
    [
        partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1.0, total_steps=None),
        partial(warmup_cosine, warmup_fraction=0.1),
    ],
    ids=["one_cycle", "warmup_cosine"],
)
def test_the_task_gives_the_schedule_the_runs_length(monkeypatch, scheduler: partial) -> None:
    task = _task(scheduler)
    monkeypatch.setattr(ClassificationTask, "trainer", _Trainer(), raising=False)
    config = task.configure_optimizers()
    schedule = config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(40):
        lrs.append(config["optimizer"].param_groups[0]["lr"])
        config["optimizer"].step()
        schedule.step()
    peak = lrs.index(max(lrs))
    assert 1 <= peak <= 12 and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] < 0.01  # annealed by the 40th step: the schedule knew the length


def test_steps_past_the_estimated_length_keep_the_final_lr(monkeypatch) -> None:
    """Epochs of fresh BERT pairs vary in length, so a run can take more steps than the estimate
    the one-cycle schedule was built with; it then holds its last lr instead of raising."""
    task = _task(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1.0, total_steps=None))
    monkeypatch.setattr(ClassificationTask, "trainer", _Trainer(), raising=False)
    config = task.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    for _ in range(_Trainer.estimated_stepping_batches - 1):
        optimizer.step()
        task.lr_scheduler_step(schedule, None)
    final = optimizer.param_groups[0]["lr"]
    for _ in range(5):
        optimizer.step()
        task.lr_scheduler_step(schedule, None)
    assert optimizer.param_groups[0]["lr"] == final < 1e-3
    with pytest.raises(ValueError, match="total steps"):
        for _ in range(2):  # what Lightning's plain steps would have done
            schedule.step()


def test_a_given_total_steps_is_kept(monkeypatch) -> None:
    task = _task(partial(warmup_cosine, total_steps=11, warmup_fraction=0.0))
    monkeypatch.setattr(ClassificationTask, "trainer", _Trainer(), raising=False)
    config = task.configure_optimizers()
    lambdas = config["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert lambdas(11) == pytest.approx(0.0) and lambdas(6) == pytest.approx(0.5)


def test_warmup_cosine_shape() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    factor = warmup_cosine(optimizer, total_steps=100, warmup_fraction=0.1, min_lr_ratio=0.1)
    factor = factor.lr_lambdas[0]
    assert [factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert factor(55) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert factor(100) == pytest.approx(0.1) and factor(500) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_fraction"):
        warmup_cosine(optimizer, 100, warmup_fraction=1.0)
