"""Token id sequences packed into one flat array plus offsets, for corpora of many short examples.

A Python list of lists costs about 36 bytes a token (8 for the pointer, 28 for each int object
above 256) and a list header per example; one uint16/uint32 array with int64 offsets costs 2-4
bytes a token and 8 an example, so a 10M-pair parallel corpus fits in a laptop's memory.
Sequences come back as Python lists of ints, as the collators expect.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from attnlab.data.array_cache import ArrayWriter, CacheWriter, reduce_arrays
from attnlab.data.token_cache import token_dtype

ENCODE_BATCH = 10_000  # texts tokenized per call while a split is packed


class PackedSequences:
    """``len(packed)`` sequences; ``packed[i]`` is the i-th as a list of ints.

    The arrays are plain or memory-mapped (a cache's files); pickled, mapped arrays send only
    their file names, so spawned loader workers map the same files.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens = tokens
        self.offsets = offsets  # int64, len + 1: sequence i is tokens[offsets[i]:offsets[i + 1]]

    @classmethod
    def pack(cls, batches: Iterable[Sequence[Sequence[int]]], vocab_size: int) -> PackedSequences:
        """From batches of sequences (e.g. one tokenizer call each), never all lists at once."""
        builder = PackedBuilder.in_memory(token_dtype(vocab_size))
        for batch in batches:
            builder.add(batch)
        return builder.build()

    @classmethod
    def from_cache(cls, arrays: dict[str, np.ndarray], name: str) -> PackedSequences:
        """The sequences a ``PackedBuilder.into(writer, name, ...)`` wrote into a cache."""
        return cls(arrays[f"{name}.tokens"], arrays[f"{name}.offsets"])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def array(self, index: int) -> np.ndarray:
        """Sequence ``index`` as a view of the token array."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} of {len(self)}")
        index %= len(self)
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    def __getitem__(self, index: int) -> list[int]:
        return self.array(index).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.tokens.nbytes + self.offsets.nbytes

    def __reduce__(self) -> tuple[Callable, tuple]:
        return reduce_arrays(PackedSequences, (self.tokens, self.offsets))


class PackedTexts:
    """Strings packed as their UTF-8 bytes, like token ids: about a byte a character instead of
    a Python string's 50-byte header and the list's pointer each."""

    def __init__(self, packed: PackedSequences) -> None:
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, index: int) -> str:
        return self.packed.array(index).tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class _Chunks:
    """An in-memory stand-in for a cache's ``ArrayWriter``: the arrays written, joined later."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.parts: list[np.ndarray] = []

    def write(self, values: np.ndarray) -> None:
        self.parts.append(np.asarray(values, dtype=self.dtype))

    def joined(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, self.dtype)


class PackedBuilder:
    """Packs batches of sequences (``add``) or texts (``add_texts``) as they come, into memory
    (``in_memory``, then ``build``) or into a cache's files (``into``)."""

    def __init__(self, tokens: ArrayWriter | _Chunks, offsets: ArrayWriter | _Chunks) -> None:
        self.tokens, self.offsets = tokens, offsets
        self.offsets.write(np.zeros(1))
        self.count = self.total = 0  # sequences and tokens so far

    @classmethod
    def in_memory(cls, dtype: np.dtype) -> PackedBuilder:
        return cls(_Chunks(dtype), _Chunks(np.int64))

    @classmethod
    def into(cls, writer: CacheWriter, name: str, dtype: np.dtype) -> PackedBuilder:
        return cls(writer.array(f"{name}.tokens", dtype), writer.array(f"{name}.offsets", np.int64))

    def add(self, batch: Sequence[Sequence[int]]) -> None:
        lengths = np.fromiter(map(len, batch), np.int64, len(batch))
        self._append(np.fromiter(itertools.chain.from_iterable(batch), self.tokens.dtype), lengths)

    def add_texts(self, texts: Sequence[str]) -> None:
        encoded = [text.encode("utf-8") for text in texts]
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        self._append(np.frombuffer(b"".join(encoded), np.uint8), lengths)

    def _append(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        self.tokens.write(tokens)
        self.offsets.write(self.total + np.cumsum(lengths))
        self.count += len(lengths)
        self.total += int(lengths.sum())

    def build(self) -> PackedSequences:
        """The sequences packed in memory (``in_memory`` builders)."""
        return PackedSequences(self.tokens.joined(), self.offsets.joined())


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
