"""Text classification: cross-entropy, accuracy and macro-F1 per stage."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from attnlab.models.classifier import load_glove
from attnlab.tasks.base import BaseTask


class ClassificationTask(BaseTask):
    """``net(input_ids, attention_mask) -> (logits, attention weights)`` trained on labels."""

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.0,
        glove_path: str | None = None,
        **base: Any,
    ) -> None:
        self.num_classes = num_classes
        super().__init__(**base)
        self.label_smoothing = label_smoothing
        self.glove_path = glove_path

    def build_metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro"),
                "f1": MulticlassF1Score(self.num_classes, average="macro"),
            }
        )

    def setup(self, stage: str) -> None:
        """Copy GloVe vectors into the embedding table once, before training starts."""
        if stage != "fit" or not self.glove_path:
            return
        vocab = self.trainer.datamodule.tokenizer.vocab()
        rows, hits = load_glove(self.glove_path, vocab, self.net.embedding.embedding_dim)
        self.net.embedding.weight.data.copy_(rows)
        print(f"GloVe: {hits}/{len(vocab)} vocabulary entries initialised from {self.glove_path}")

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(input_ids, attention_mask)

    def step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        logits, _ = self(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        self.stage_metrics(stage).update(logits, batch["labels"])
        self.log_metrics(stage, loss, batch_size=batch["labels"].numel())
        return loss
