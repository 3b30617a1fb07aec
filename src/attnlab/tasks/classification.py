"""Classification of texts or images: cross-entropy, accuracy and macro-F1 per stage.

One task for both: ``inputs`` names the batch entries the model takes (``input_ids`` and
``attention_mask`` for text, ``images`` for images). A model may return the logits alone or
``(logits, attention weights)`` as the attention-pooling classifier does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from attnlab.errors import ConfigError
from attnlab.hf.bert import bert_word_embeddings
from attnlab.models.classifier import load_glove
from attnlab.tasks.base import BaseTask

TEXT_INPUTS = ("input_ids", "attention_mask")


class ClassificationTask(BaseTask):
    """``net(*batch[inputs]) -> logits`` or ``(logits, weights)``, trained on ``labels``."""

    def __init__(
        self,
        num_classes: int,
        inputs: Sequence[str] = TEXT_INPUTS,
        label_smoothing: float = 0.0,
        glove_path: str | None = None,
        static_embeddings: str | None = None,
        freeze_embeddings: bool = False,
        **base: Any,
    ) -> None:
        self.num_classes = num_classes
        inputs = [str(name) for name in inputs]  # a plain list: hyperparameters load weights_only
        super().__init__(**base)
        self.inputs = inputs
        self.label_smoothing = label_smoothing
        self.glove_path = glove_path
        self.static_embeddings = static_embeddings
        self.freeze_embeddings = freeze_embeddings

    def build_metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, average="micro"),
                "f1": MulticlassF1Score(self.num_classes, average="macro"),
            }
        )

    def setup(self, stage: str) -> None:
        """Copy pretrained static vectors (GloVe, or a BERT's input word-piece table) into the
        embedding table once, before training starts (a resumed run then loads its own)."""
        super().setup(stage)
        if stage != "fit" or not (
            self.glove_path or self.static_embeddings or self.freeze_embeddings
        ):
            return
        table = self.net.embedding
        if self.glove_path:
            vocab = self.data.tokenizer.vocab()
            rows, hits = load_glove(self.glove_path, vocab, table.embedding_dim)
            table.weight.data.copy_(rows)
            print(
                f"GloVe: {hits}/{len(vocab)} vocabulary entries initialised from {self.glove_path}"
            )
        if self.static_embeddings:
            try:
                rows = bert_word_embeddings(self.static_embeddings, table.weight.shape)
            except (FileNotFoundError, ValueError) as error:  # models/ raises plain errors
                raise ConfigError(str(error)) from error
            table.weight.data.copy_(rows)
        if self.freeze_embeddings:
            table.weight.requires_grad_(False)

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return self.net(*inputs)

    def step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        logits = self(*(batch[name] for name in self.inputs))
        if isinstance(logits, tuple):  # (logits, attention weights)
            logits = logits[0]
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        self.stage_metrics(stage).update(logits, batch["labels"])
        self.log_metrics(stage, loss, batch_size=batch["labels"].numel())
        return loss
