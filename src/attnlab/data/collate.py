"""Batching: dynamic padding to the longest sequence of each batch, with the mask beside it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

IGNORE_INDEX = -100  # the label of positions that are not predicted (cross_entropy's default)


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """ids (B, T) padded with ``pad_id`` and mask (B, T), True on real tokens."""
    length = max(1, max(len(s) for s in sequences))
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sequences])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return ids, mask


class ClassificationCollator:
    """(ids, label) examples -> {"input_ids", "attention_mask", "labels"}."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[tuple[list[int], int]]) -> dict[str, Tensor]:
        ids, mask = pad_sequences([ids for ids, _ in examples], self.pad_id)
        labels = torch.tensor([label for _, label in examples], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
