"""BERT pretraining: masked-LM loss, accuracy and perplexity, plus a sentence-pair objective:
next-sentence prediction (BERT) or sentence-order prediction (ALBERT).

loss = CE(MLM logits at the masked positions, original tokens)
       [+ nsp_weight * CE(pair logits, IsNext/NotNext or InOrder/Swapped)]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from attnlab.data.collate import IGNORE_INDEX
from attnlab.data.pretraining_examples import PAIR_OBJECTIVES
from attnlab.errors import ConfigError
from attnlab.tasks.base import BaseTask
from attnlab.tasks.metrics import Perplexity


class BertPretrainingTask(BaseTask):
    """``net(ids, segments, mask, masked_positions) -> (MLM logits (N, V), NSP logits (B, 2))``.

    ``nsp`` adds the sentence-pair loss (the batch must carry ``next_sentence_labels``), logged
    as ``<pair_objective>_loss`` / ``_acc`` (nsp or sop: the head is the same). To start from
    real BERT weights, build ``net`` with ``model=bert_pretrained``.
    """

    def __init__(
        self,
        vocab_size: int,
        nsp: bool = True,
        nsp_weight: float = 1.0,
        pair_objective: str = "nsp",
        **base: Any,
    ) -> None:
        if pair_objective not in PAIR_OBJECTIVES:
            raise ConfigError(
                f"task.pair_objective={pair_objective} is not one of {', '.join(PAIR_OBJECTIVES)}"
            )
        self.vocab_size = vocab_size
        self.nsp = nsp
        self.pair = pair_objective
        self.loss_names = ("loss", "mlm_loss", f"{pair_objective}_loss")
        super().__init__(**base)
        self.nsp_weight = nsp_weight

    def build_metrics(self) -> MetricCollection:
        metrics = {
            "mlm_acc": MulticlassAccuracy(self.vocab_size, average="micro"),
            "mlm_ppl": Perplexity(),
        }
        if self.nsp:
            metrics[f"{self.pair}_acc"] = MulticlassAccuracy(2, average="micro")
        return MetricCollection(metrics)

    def setup(self, stage: str) -> None:
        """The vocabulary the data and the model must share, checked before the first batch."""
        super().setup(stage)
        if self.data is None:
            return
        vocab_size = self.data.tokenizer.vocab_size
        if vocab_size != self.net.bert.vocab_size:
            raise ConfigError(
                f"the tokenizer has {vocab_size} tokens, the model "
                f"{self.net.bert.vocab_size}: use the checkpoint's vocab.txt "
                "(data.tokenizer.vocab=PATH/vocab.txt)"
            )

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.net(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            masked_positions=batch["labels"] != IGNORE_INDEX,
        )

    def step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        mlm_logits, nsp_logits = self(batch)
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        mlm_loss = F.cross_entropy(mlm_logits.float(), targets)
        loss = mlm_loss
        metrics = self.stage_metrics(stage)
        metrics["mlm_acc"].update(mlm_logits.detach(), targets)
        metrics["mlm_ppl"].update(mlm_loss.detach(), weight=targets.numel())
        size = batch["input_ids"].size(0)
        self.log_mean(stage, "mlm_loss", mlm_loss, size)
        if self.nsp:
            labels = batch["next_sentence_labels"]
            pair_loss = F.cross_entropy(nsp_logits.float(), labels)
            loss = loss + self.nsp_weight * pair_loss
            metrics[f"{self.pair}_acc"].update(nsp_logits.detach(), labels)
            self.log_mean(stage, f"{self.pair}_loss", pair_loss, size)
        self.log_metrics(stage, loss, batch_size=size)
        return loss

    @torch.no_grad()
    def top_predictions(self, batch: dict[str, Tensor], k: int = 5) -> tuple[Tensor, Tensor]:
        """The ``k`` most likely tokens at each masked position: (probabilities, ids), (N, k)."""
        batch = {name: value.to(self.device) for name, value in batch.items()}
        mlm_logits, _ = self(batch)
        return mlm_logits.float().softmax(-1).topk(k, dim=-1)
