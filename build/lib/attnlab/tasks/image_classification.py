"""Image classification: cross-entropy, accuracy and macro-F1 per stage, a per-step LR schedule.

A Transformer trained from scratch wants a warm-up then a decay of the learning rate, stepped
every batch: ``torch.optim.lr_scheduler.OneCycleLR`` or ``warmup_cosine`` below. Both take
``total_steps``, which ``BaseTask`` fills in from the trainer when the config leaves it null.
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from attnlab.tasks.base import BaseTask


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """The lr rises linearly to the optimizer's lr over the first ``warmup_fraction`` of the
    steps, then follows half a cosine down to ``min_lr_ratio`` times it at ``total_steps``."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


class ImageClassificationTask(BaseTask):
    """``net(images (B, C, H, W)) -> logits (B, num_classes)`` trained on labels."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, **base: Any) -> None:
        self.num_classes = num_classes
        super().__init__(**base)
        self.label_smoothing = label_smoothing

    def build_metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro"),
                "f1": MulticlassF1Score(self.num_classes, average="macro"),
            }
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        logits = self(batch["images"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        self.stage_metrics(stage).update(logits, batch["labels"])
        self.log_metrics(stage, loss, batch_size=batch["labels"].numel())
        return loss
