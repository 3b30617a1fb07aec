"""Next-token prediction: token cross-entropy and perplexity per stage, and text samples."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection

from attnlab.data.collate import IGNORE_INDEX
from attnlab.models.lm import generate
from attnlab.tasks.base import BaseTask
from attnlab.tasks.metrics import Perplexity


class LanguageModelTask(BaseTask):
    """``net(input_ids) -> logits (B, T, V)``; labels are the inputs shifted by one token."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, **base: Any) -> None:
        super().__init__(**base)
        self.ignore_index = ignore_index

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"ppl": Perplexity()})

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.net(input_ids)

    def step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        labels = batch["labels"]
        if getattr(self.net, "loss_from_labels", False):  # e.g. without the full logits
            loss = self.net(batch["input_ids"], labels=labels, ignore_index=self.ignore_index)
        else:
            logits = self(batch["input_ids"])
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=self.ignore_index
            )
        tokens = (labels != self.ignore_index).sum()
        self.stage_metrics(stage).update(loss.detach(), weight=tokens)
        self.log_metrics(stage, loss, batch_size=labels.size(0))
        return loss

    @torch.no_grad()
    def sample(self, prompt_ids: Tensor, max_new_tokens: int, **sampling: Any) -> Tensor:

        return generate(self.net, prompt_ids.to(self.device), max_new_tokens, **sampling)
