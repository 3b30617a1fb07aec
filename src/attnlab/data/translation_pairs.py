"""A translation split's pairs as packed token ids, and their batches.

Evaluation splits also keep each pair's source text and its reference in BLEU's normal form
(``normal_form``: the target tokenizer's normalisation and pre-tokenisation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data.collate import pad_sequences, texts_as_bytes
from attnlab.data.packed import PackedSequences, PackedTexts
from attnlab.data.tokenization import TextTokenizer


def normal_form(tokenizer: TextTokenizer, text: str) -> str:
    """``text`` normalised and pre-tokenised as the tokenizer sees it, words joined by spaces."""
    inner = tokenizer.tokenizer
    if inner.normalizer is not None:
        text = inner.normalizer.normalize_str(text)
    if inner.pre_tokenizer is not None:
        return " ".join(word for word, _ in inner.pre_tokenizer.pre_tokenize_str(text))
    return " ".join(text.split())


class TranslationCollator:
    """Examples -> padded source and target ids with masks; on evaluation splits also the
    source and the reference as UTF-8 bytes (``texts_from_bytes``), for BLEU and the plots.

    ``tgt_ids`` is [BOS] y [EOS] padded: the decoder reads ``tgt_ids[:, :-1]`` and is trained to
    predict ``tgt_ids[:, 1:]``.
    """

    def __init__(self, src_pad_id: int, tgt_pad_id: int) -> None:
        self.src_pad_id = src_pad_id
        self.tgt_pad_id = tgt_pad_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        src_ids, src_mask = pad_sequences([e["src_ids"] for e in examples], self.src_pad_id)
        tgt_ids, tgt_mask = pad_sequences([e["tgt_ids"] for e in examples], self.tgt_pad_id)
        batch = {"src_ids": src_ids, "src_mask": src_mask, "tgt_ids": tgt_ids, "tgt_mask": tgt_mask}
        if "source" in examples[0]:  # evaluation splits: for BLEU and the plots
            batch["source_text"] = texts_as_bytes([e["source"] for e in examples])
            batch["reference_text"] = texts_as_bytes([e["reference"] for e in examples])
        return batch


class TextPairs:
    """(source, reference) texts of an evaluation split, packed as UTF-8 bytes."""

    def __init__(self, sources: PackedTexts, references: PackedTexts) -> None:
        self.sources, self.references = sources, references

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[str, str]:
        return self.sources[index], self.references[index]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return (self[i] for i in range(len(self)))


class TranslationPairs(Dataset):
    """A split's pairs as packed token ids; evaluation splits also keep the source text and the
    reference in BLEU's normal form. Training pairs keep no text: a 10M-pair corpus costs its
    token ids (2 bytes each with vocabularies below 65,536) and 16 bytes of offsets a pair,
    memory-mapped from the pair cache."""

    def __init__(
        self,
        sources: PackedSequences,
        targets: PackedSequences,
        bos_id: int,
        eos_id: int,
        texts: TextPairs | None = None,
    ) -> None:
        self.sources, self.targets = sources, targets
        self.bos_id, self.eos_id = bos_id, eos_id
        self.texts = texts

    @classmethod
    def from_cache(
        cls, arrays: dict[str, np.ndarray], split: str, bos_id: int, eos_id: int
    ) -> TranslationPairs:
        """The split ``ParallelCorpusDataModule._write_split`` wrote into the pair cache."""
        texts = None
        if f"{split}.source.tokens" in arrays:
            texts = TextPairs(
                PackedTexts(PackedSequences.from_cache(arrays, f"{split}.source")),
                PackedTexts(PackedSequences.from_cache(arrays, f"{split}.reference")),
            )
        return cls(
            PackedSequences.from_cache(arrays, f"{split}.src"),
            PackedSequences.from_cache(arrays, f"{split}.tgt"),
            bos_id,
            eos_id,
            texts,
        )

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = {
            "src_ids": self.sources[index],
            "tgt_ids": [self.bos_id, *self.targets[index], self.eos_id],
        }
        if self.texts is not None:
            example["source"], example["reference"] = self.texts[index]
        return example

    @property
    def target_lengths(self) -> np.ndarray:
        """Decoder steps per pair ([BOS] y [EOS]), for bucketing."""
        return self.targets.lengths + 2

    @property
    def nbytes(self) -> int:
        return self.sources.nbytes + self.targets.nbytes


class PairSide:
    """One side (0: source, 1: target) of a split's filtered pairs, re-read from the table on
    every pass (the tokenizer's hash, then its training), never held as one list."""

    def __init__(self, chunks: Callable[[], Iterator[list[tuple[str, str]]]], side: int) -> None:
        self.chunks, self.side = chunks, side
        self.count: int | None = None  # counted on first use (a given vocabulary never asks)

    def __len__(self) -> int:
        if self.count is None:
            self.count = sum(len(chunk) for chunk in self.chunks())
        return self.count

    def __iter__(self) -> Iterator[str]:
        return (pair[self.side] for chunk in self.chunks() for pair in chunk)
