"""Batching: dynamic padding to the longest sequence of each batch, with the mask beside it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

IGNORE_INDEX = -100  # the label of positions that are not predicted (cross_entropy's default)
ALIGNMENT = 8  # bytes: every dtype's view of a batch's one buffer starts on its own boundary


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """ids (B, T) padded with ``pad_id`` and mask (B, T), True on real tokens (T at least 1)."""
    rows = [torch.as_tensor(sequence, dtype=torch.long) for sequence in sequences]
    ids = pad_sequence(rows, batch_first=True, padding_value=pad_id)
    if ids.shape[1] == 0:  # every sequence empty: one padding column keeps shapes usable
        ids = ids.new_full((len(rows), 1), pad_id)
    lengths = torch.tensor([len(row) for row in rows])
    mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    return ids, mask


def texts_as_bytes(texts: Sequence[str]) -> Tensor:
    """Texts -> their UTF-8 bytes (B, L) padded with zero bytes: texts a batch carries as a
    tensor (references for BLEU), so batches hold tensors only."""
    encoded = [list(text.encode()) for text in texts]
    return pad_sequences(encoded, 0)[0].to(torch.uint8)


def texts_from_bytes(rows: Tensor) -> list[str]:
    """The texts ``texts_as_bytes`` packed."""
    return [bytes(row).rstrip(b"\0").decode() for row in rows.cpu().numpy()]


class ClassificationCollator:
    """(ids, label) examples -> {"input_ids", "attention_mask", "labels"}."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[tuple[list[int], int]]) -> dict[str, Tensor]:
        ids, mask = pad_sequences([ids for ids, _ in examples], self.pad_id)
        labels = torch.tensor([label for _, label in examples], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def in_one_storage(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with its tensors copied into consecutive slices of one byte buffer (values,
    dtypes and shapes kept; other entries, such as texts, pass through).

    Why: a loader worker sends every tensor storage to the main process as a shared-memory file
    of its own, whose descriptor the main process fetches from the worker in a round trip; one
    storage per batch makes a four-tensor BERT batch cross 2x faster on 2 cores.
    """
    tensors = {name: value for name, value in batch.items() if isinstance(value, Tensor)}
    starts, size = [], 0
    for tensor in tensors.values():
        size = -(-size // ALIGNMENT) * ALIGNMENT
        starts.append(size)
        size += tensor.numel() * tensor.element_size()
    buffer = torch.empty(size, dtype=torch.uint8)
    packed = dict(batch)
    for (name, tensor), start in zip(tensors.items(), starts, strict=True):
        nbytes = tensor.numel() * tensor.element_size()
        view = buffer[start : start + nbytes].view(tensor.dtype).view(tensor.shape)
        packed[name] = view.copy_(tensor)
    return packed


class WorkerCollate:
    """A collate function for loader workers: its batches come in one storage."""

    def __init__(self, collate: Callable[[Any], Mapping[str, Any]]) -> None:
        self.collate = collate

    def __call__(self, examples: Any) -> dict[str, Any]:
        return in_one_storage(self.collate(examples))
