"""Batch samplers: batches of examples of similar length, in an order a resume can replay."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from attnlab.errors import DataError


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of examples of similar length: little padding, few wasted RNN steps.

    With ``shuffle``, every epoch shuffles the examples, sorts each pool of ``pool_batches``
    batches by length, cuts it into batches and shuffles the batches (seeded by ``seed`` and the
    epoch). Without, the batches follow the examples sorted by length (for evaluation).
    The order is a function of the epoch alone (``set_epoch``, as Lightning calls each epoch),
    so a resumed run can replay an epoch's order and skip what it has seen.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"data.batch_size={batch_size} must be >= 1")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            yield from self._cut(np.argsort(self.lengths, kind="stable"))
            return
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            batches.extend(self._cut(pool[np.argsort(self.lengths[pool], kind="stable")]))
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        order = order.tolist()
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
