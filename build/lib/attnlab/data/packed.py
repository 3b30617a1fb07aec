"""Token id sequences packed into one flat array plus offsets, for corpora of many short examples.

A Python list of lists costs about 36 bytes a token (8 for the pointer, 28 for each int object
above 256) and a list header per example; one uint16/uint32 array with int64 offsets costs 2-4
bytes a token and 8 an example, so a 10M-pair parallel corpus fits in a laptop's memory.
Sequences come back as Python lists of ints, as the collators expect.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from attnlab.data.token_cache import token_dtype

ENCODE_BATCH = 10_000  # texts tokenized per call while a split is packed


class PackedSequences:
    """``len(packed)`` sequences; ``packed[i]`` is the i-th as a list of ints."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens = tokens
        self.offsets = offsets  # int64, len + 1: sequence i is tokens[offsets[i]:offsets[i + 1]]

    @classmethod
    def pack(cls, batches: Iterable[Sequence[Sequence[int]]], vocab_size: int) -> PackedSequences:
        """From batches of sequences (e.g. one tokenizer call each), never all lists at once."""
        builder = PackedBuilder(vocab_size)
        for batch in batches:
            builder.add(batch)
        return builder.build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> list[int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} of {len(self)}")
        index %= len(self)
        return self.tokens[self.offsets[index] : self.offsets[index + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.tokens.nbytes + self.offsets.nbytes


class PackedBuilder:
    """Packs batches of sequences as they come (``add``), then ``build`` joins them."""

    def __init__(self, vocab_size: int) -> None:
        self.dtype = token_dtype(vocab_size)
        self.chunks: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def add(self, batch: Sequence[Sequence[int]]) -> None:
        self.lengths.append(np.fromiter(map(len, batch), np.int64, len(batch)))
        self.chunks.append(np.fromiter(itertools.chain.from_iterable(batch), self.dtype))

    def build(self) -> PackedSequences:
        offsets = np.zeros(sum(map(len, self.lengths)) + 1, np.int64)
        if self.lengths:
            np.cumsum(np.concatenate(self.lengths), out=offsets[1:])
        tokens = np.concatenate(self.chunks) if self.chunks else np.zeros(0, self.dtype)
        return PackedSequences(tokens, offsets)


class LabelledSequences:
    """``(ids, label)`` examples of a classification split: packed ids, an int64 label array."""

    def __init__(self, sequences: PackedSequences, labels: Sequence[int]) -> None:
        if len(labels) != len(sequences):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.sequences = sequences
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[list[int], int]:
        return self.sequences[index], int(self.labels[index])

    def __iter__(self) -> Iterator[tuple[list[int], int]]:
        return (self[i] for i in range(len(self)))
