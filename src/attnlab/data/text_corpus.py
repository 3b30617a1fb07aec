"""Documents -> one token stream -> contiguous blocks for next-token prediction.

The embedded default is 101 English Wikipedia articles (``embedded/wiki_articles.jsonl.gz``,
CC BY-SA; one ``{"title", "sentences"}`` per line). Documents are split between train,
validation and test whole (never a document in two splits), joined with ``[SEP]`` and cut into
blocks of ``block_size + 1`` tokens: inputs are the first ``block_size``, targets the last.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader, TensorDataset

from attnlab.data.base import TokenizedDataModule
from attnlab.data.sources import DataError, load_splits, require_columns
from attnlab.data.tokenization import TextTokenizer, build_tokenizer


def documents(split: Dataset, text_column: str, sentences_column: str | None) -> list[list[str]]:
    """Each record as a document, a list of sentences (or lines); empty documents dropped.

    Plain-text sources (e.g. wikitext) have one line per record: they become one-line
    documents, which is what a stream of text needs.
    """
    if sentences_column:
        docs = [[s for s in sents if s.strip()] for sents in split[sentences_column]]
    else:
        docs = [
            [line for line in str(text).splitlines() if line.strip()] for text in split[text_column]
        ]
    return [doc for doc in docs if doc]


class TextCorpusDataModule(TokenizedDataModule):
    """Language-model blocks from a hub dataset, local text/jsonl files or embedded Wikipedia."""

    def __init__(
        self,
        source: Mapping[str, Any],
        text_column: str = "text",
        sentences_column: str | None = None,
        tokenizer: Mapping[str, Any] | None = None,
        block_size: int = 128,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 1234,
        cache_dir: str = "outputs/cache",
    ) -> None:
        super().__init__()
        if block_size < 2:
            raise DataError(f"data.block_size={block_size} is too small; use 2 or more")
        self.source = dict(source)
        self.text_column = text_column
        self.sentences_column = sentences_column
        self.tokenizer_args = {**(tokenizer or {}), "max_length": None}
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.tokenizer: TextTokenizer | None = None
        self.streams: dict[str, torch.Tensor] = {}

    def _load(self) -> None:
        raw = load_splits(
            **self.source,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        column = {"sentences_column": self.sentences_column} if self.sentences_column else {}
        require_columns(raw["train"], column or {"text_column": self.text_column})
        docs = {
            name: documents(split, self.text_column, self.sentences_column)
            for name, split in raw.items()
        }
        texts = {name: [" ".join(doc) for doc in split] for name, split in docs.items()}
        if self.tokenizer is None:  # else restored from a checkpoint: keep its ids
            self.tokenizer = build_tokenizer(texts["train"], self.cache_dir, **self.tokenizer_args)
        separator = self.tokenizer.token_id("[SEP]")
        for name, split_texts in texts.items():
            stream = [i for ids in self.tokenizer.encode(split_texts) for i in [*ids, separator]]
            if len(stream) <= self.block_size:
                raise DataError(
                    f"the '{name}' split has {len(stream)} tokens, not enough for one block of "
                    f"{self.block_size}: lower data.block_size or add documents"
                )
            self.streams[name] = torch.tensor(stream, dtype=torch.long)

    def setup(self, stage: str | None = None) -> None:
        if not self.streams:
            self._load()

    def blocks(self, split: str) -> TensorDataset:
        """Non-overlapping (input, target) blocks; targets are inputs shifted by one token."""
        stream = self.streams[split]
        count = (len(stream) - 1) // self.block_size
        span = count * self.block_size
        inputs = stream[:span].view(count, self.block_size)
        targets = stream[1 : span + 1].view(count, self.block_size)
        return TensorDataset(inputs, targets)

    def unigram_perplexity(self, split: str = "validation") -> float:
        """Perplexity on ``split`` of token frequencies counted on train (add-one smoothed).

        The floor a language model must beat: it knows how common each token is, not context.
        """
        counts = Counter(self.streams["train"].tolist())
        total = sum(counts.values()) + self.vocab_size
        tokens = self.streams[split].tolist()
        nll = -sum(math.log((counts[t] + 1) / total) for t in tokens) / len(tokens)
        return math.exp(nll)

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
