"""Streaming: corpora bigger than the disk, tokenized as they are read, in the loader workers.

With ``data.source.streaming=true`` a hub dataset or local files are read as a ``datasets``
IterableDataset: nothing is cached and nothing waits for a whole corpus. What a stream gives up,
against the token cache:

- exact mid-epoch resume: a run resumed mid-epoch starts that epoch's stream again;
- NSP pairs: a NotNext segment needs random access to other documents (``data.nsp=false``);
- carving validation/test from train: the source must have those splits;
- a full shuffle: records are shuffled in a buffer of ``source.shuffle_buffer`` (and the order
  of the files changes each epoch);
- a length: Lightning's progress bar shows no total, and loader workers share a stream by its
  files (``datasets`` shards), so give at least as many files as ``data.num_workers``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from attnlab.data.token_cache import Document
from attnlab.data.tokenization import TextTokenizer

if TYPE_CHECKING:
    from datasets import IterableDataset as RecordStream

READ_BATCH = 256  # records tokenized together in a worker


class StreamedDocuments(IterableDataset):
    """Each document of a record stream as one flat array of token ids."""

    def __init__(
        self,
        records: RecordStream,
        read: Callable[[list[Any]], list[Document]],
        column: str,
        tokenizer: TextTokenizer,
    ) -> None:
        self.records = records
        self.read = read
        self.column = column
        self.tokenizer = tokenizer

    def __iter__(self) -> Iterator[np.ndarray]:
        records = iter(self.records)  # in a worker: only that worker's shards
        while batch := list(itertools.islice(records, READ_BATCH)):
            docs = self.read([record[self.column] for record in batch])
            for ids in self.tokenizer.encode([" ".join(doc) for doc in docs]):
                if ids:
                    yield np.asarray(ids, dtype=np.int64)


class StreamedBlocks(IterableDataset):
    """(input, target) blocks of the documents' stream, each document followed by
    ``separator``: the blocks ``Blocks`` cuts from a cache, from a stream."""

    def __init__(self, documents: StreamedDocuments, block_size: int, separator: int) -> None:
        self.documents = documents
        self.block_size = block_size
        self.separator = separator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pending = np.zeros(0, dtype=np.int64)
        for ids in self.documents:
            pending = np.concatenate([pending, ids, [self.separator]])
            while len(pending) > self.block_size:
                block = torch.from_numpy(pending[: self.block_size + 1].copy())
                yield block[:-1], block[1:]
                pending = pending[self.block_size :]


def worker_seed(seed: int) -> int:
    """``seed`` made distinct per loader worker (each reads other documents)."""
    info = get_worker_info()
    return seed * 1000 + (info.id if info is not None else 0)


class StreamedSegments(IterableDataset):
    """MLM-only examples ``[CLS] x [SEP]`` cut from each streamed document (``cut``: the spans
    of one document, as ``plan_segments`` cuts them)."""

    def __init__(
        self,
        documents: StreamedDocuments,
        cut: Callable[[int, int, random.Random], Iterator[tuple[int, int]]],
        cls_id: int,
        sep_id: int,
        seed: int,
    ) -> None:
        self.documents = documents
        self.cut = cut
        self.cls_id = cls_id
        self.sep_id = sep_id
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(worker_seed(self.seed))
        for ids in self.documents:
            for start, stop in self.cut(0, len(ids), rng):
                piece = np.concatenate([[self.cls_id], ids[start:stop], [self.sep_id]])
                example = torch.from_numpy(piece)
                yield {"input_ids": example, "token_type_ids": torch.zeros_like(example)}


class StreamedMaskedOnce(IterableDataset):
    """A stream of examples masked with a generator seeded by ``seed`` and their position (for
    validation and test: the same masks every epoch, for a given number of workers)."""

    def __init__(self, examples: IterableDataset, mask: Callable[..., dict], seed: int) -> None:
        self.examples = examples
        self.mask = mask
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        base = worker_seed(self.seed) << 32
        for index, example in enumerate(self.examples):
            yield self.mask(example, torch.Generator().manual_seed(base + index))
