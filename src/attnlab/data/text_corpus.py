"""Documents -> one token stream -> contiguous blocks for next-token prediction.

The embedded default is 101 English Wikipedia articles (``embedded/wiki_articles.jsonl.gz``,
CC BY-SA; one ``{"title", "sentences"}`` per line). Documents are split between train,
validation and test whole (never a document in two splits); the stream is every document
followed by ``[SEP]``, cut into blocks of ``block_size + 1`` tokens: inputs are the first
``block_size``, targets the last. Blocks are sliced from the memory-mapped token cache when read
(the stream is never built), or cut from a stream as it is read (``source.streaming``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from attnlab.data.base import first_examples
from attnlab.data.corpus import CorpusDataModule
from attnlab.data.streaming import StreamedBlocks
from attnlab.data.token_cache import TokenizedSplit
from attnlab.errors import DataError


class TokenStream:
    """A split's documents, each followed by a separator, as one sequence sliced on demand."""

    def __init__(self, split: TokenizedSplit, separator: int) -> None:
        self.tokens = split.tokens
        self.separator = separator
        # the separator after document d sits after its tokens and the d separators before it
        self.separators = split.document_tokens()[1] + np.arange(split.num_documents)

    def __len__(self) -> int:
        return len(self.tokens) + len(self.separators)

    def __getitem__(self, index: slice) -> np.ndarray:
        """Stream positions ``index`` (a slice with step 1) as int64 ids."""
        positions = np.arange(*index.indices(len(self)))
        if len(positions) == 0:
            return np.zeros(0, dtype=np.int64)
        before = np.searchsorted(self.separators, positions)  # separators before each position
        is_separator = self.separators[np.minimum(before, len(self.separators) - 1)] == positions
        token = positions - before
        first = int(token[0])
        window = np.asarray(self.tokens[first : int(token[-1]) + 1], dtype=np.int64)
        ids = window[np.minimum(token - first, len(window) - 1)] if len(window) else token * 0
        return np.where(is_separator, self.separator, ids)


class Blocks(Dataset):
    """Non-overlapping (input, target) blocks of a stream; targets are inputs shifted by one."""

    def __init__(self, stream: TokenStream, block_size: int) -> None:
        self.stream = stream
        self.block_size = block_size

    def __len__(self) -> int:
        return (len(self.stream) - 1) // self.block_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.block_size
        ids = torch.from_numpy(self.stream[start : start + self.block_size + 1])
        return ids[:-1], ids[1:]


class TextCorpusDataModule(CorpusDataModule):
    """Language-model blocks from a hub dataset, local text/jsonl files or embedded Wikipedia."""

    def __init__(self, block_size: int = 128, **corpus: Any) -> None:
        """``corpus``: the source, columns, tokenizer, split and loader settings
        (``CorpusDataModule``)."""
        if block_size < 2:
            raise DataError(f"data.block_size={block_size} is too small; use 2 or more")
        super().__init__(**corpus)
        self.block_size = block_size
        self.streams: dict[str, TokenStream] = {}

    def _load(self) -> None:
        super()._load()
        if self.streaming:
            return
        separator = self.tokenizer.token_id("[SEP]")
        for name, split in self.splits.items():
            stream = TokenStream(split, separator)
            if len(stream) <= self.block_size:
                raise DataError(
                    f"the '{name}' split has {len(stream)} tokens, not enough for one block of "
                    f"{self.block_size}: lower data.block_size or add documents"
                )
            self.streams[name] = stream

    def blocks(self, split: str) -> Blocks | StreamedBlocks:
        if self.streaming:
            separator = self.tokenizer.token_id("[SEP]")
            return StreamedBlocks(self.documents_stream(split), self.block_size, separator)
        return Blocks(self.streams[split], self.block_size)

    def _counts(self, split: str) -> np.ndarray:
        """How often each id occurs in the stream of ``split`` (separators included)."""
        data = self.splits[split]
        counts = np.bincount(data.tokens, minlength=self.vocab_size).astype(np.float64)
        counts[self.tokenizer.token_id("[SEP]")] += data.num_documents
        return counts

    def unigram_perplexity(self, split: str = "validation") -> float:
        """Perplexity on ``split`` of token frequencies counted on train (add-one smoothed).

        The floor a language model must beat: it knows how common each token is, not context.
        """
        train, held_out = self._counts("train"), self._counts(split)
        log_probs = np.log((train + 1) / (train.sum() + self.vocab_size))
        return math.exp(-(held_out * log_probs).sum() / held_out.sum())

    def batch(self, split: str, count: int) -> dict[str, torch.Tensor]:
        return _as_dict(first_examples(self.blocks(split), count))

    def split_loader(self, split: str, train: bool) -> DataLoader:
        return self.dataloader(
            self.blocks(split),
            batch_size=self.batch_size,
            shuffle=train,
            collate_fn=_as_dict,
        )


def _as_dict(examples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    inputs, targets = zip(*examples, strict=True)
    return {"input_ids": torch.stack(inputs), "labels": torch.stack(targets)}
