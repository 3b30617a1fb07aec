"""Metrics the tasks share."""

from __future__ import annotations

from torch import Tensor
from torchmetrics import MeanMetric


class Perplexity(MeanMetric):
    """exp of the mean token cross-entropy over the epoch: update with the batch's mean loss and
    ``weight`` = its token count, and the result is exact however the batches are cut."""

    def compute(self) -> Tensor:
        return super().compute().exp()
