"""Attention pooling learns tweet sentiment: the loss falls and macro-F1 beats the majority class.

Uses the session's shared ``experiment=tweet_attention`` run (see ``conftest.tweet_run``).
"""

from __future__ import annotations

from collections import Counter

import torch
from torchmetrics.functional.classification import multiclass_f1_score

MARGIN = 0.2  # test macro-F1 must beat the majority class's by this much


def test_training_loss_falls(tweet_run) -> None:
    rows = tweet_run.epoch_rows()
    epochs = [int(r["epoch"]) for r in rows]
    assert epochs == list(range(len(rows))) and len(rows) >= 3, epochs
    losses = [float(r["train/loss_epoch"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], f"training loss did not fall: {losses}"


def test_test_macro_f1_beats_majority_class(tweet_run) -> None:
    datamodule = tweet_run.datamodule
    num_classes = len(datamodule.class_names)
    majority = Counter(y for _, y in datamodule.splits["train"]).most_common(1)[0][0]
    test_labels = torch.tensor([y for _, y in datamodule.splits["test"]])
    majority_f1 = float(
        multiclass_f1_score(
            torch.full_like(test_labels, majority), test_labels, num_classes, average="macro"
        )
    )
    f1 = tweet_run.metrics["test/f1"]
    assert 0 < majority_f1 < 0.5
    assert f1 > majority_f1 + MARGIN, f"test macro-F1 {f1:.3f} vs majority {majority_f1:.3f}"
    assert tweet_run.metrics["test/acc"] > (test_labels == majority).float().mean().item()
