"""Masked-LM masking: dynamic for training batches, once (seeded) for validation and test.

``MLMCollator`` picks new positions for every training batch (15% of the real tokens, never
[CLS]/[SEP]/padding; 80% -> [MASK], 10% -> a random token, 10% unchanged); ``MaskedOnce``
masks an evaluation split once, so its metrics are comparable across epochs and runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data.collate import IGNORE_INDEX, pad_sequences
from attnlab.data.pretraining_examples import PretrainingExamples
from attnlab.errors import DataError


class MaskedOnce(Dataset):
    """Examples whose masking is fixed: example ``i`` is masked with a generator seeded by
    ``seed`` and ``i``, so validation and test metrics compare across epochs and runs."""

    def __init__(self, examples: PretrainingExamples, collator: MLMCollator, seed: int) -> None:
        self.examples = examples
        self.collator = collator
        self.seed = seed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed((self.seed << 32) + index)
        return self.collator.mask_example(self.examples[index], generator)


class MLMCollator:
    """Examples -> a padded batch with masked-LM inputs and labels (and NSP labels if present).

    Per sequence, ``round(mlm_probability * n)`` of its n maskable tokens are chosen (at least
    one), as in google-research/bert; with ``whole_word_masking`` whole words (a token and its
    ``##`` continuations) are chosen together. Of the chosen, ``mask_token_prob`` become [MASK],
    ``random_token_prob`` a random non-special token, the rest stay; labels hold the original id
    at chosen positions and -100 elsewhere. Examples that already carry ``labels`` (validation,
    masked once) are only padded.
    """

    def __init__(
        self,
        pad_id: int,
        mask_id: int,
        special_ids: Sequence[int],
        random_ids: Tensor,
        mlm_probability: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        continuation_ids: Sequence[int] | None = None,
    ) -> None:
        if not 0 < mlm_probability < 1:
            raise DataError(f"data.mlm_probability={mlm_probability} must be in (0, 1)")
        if mask_token_prob < 0 or random_token_prob < 0 or mask_token_prob + random_token_prob > 1:
            raise DataError(
                f"data.mask_token_prob={mask_token_prob} and data.random_token_prob="
                f"{random_token_prob} must be >= 0 and sum to at most 1 (the rest stay unchanged)"
            )
        self.pad_id = pad_id
        self.mask_id = mask_id
        self.special_ids = set(special_ids)
        self.specials = torch.tensor(sorted(self.special_ids))
        self.random_ids = random_ids
        self.mlm_probability = mlm_probability
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self.continuation_ids = set(continuation_ids) if continuation_ids is not None else None

    def choose(self, ids: Sequence[int], generator: torch.Generator | None = None) -> list[int]:
        """The positions of ``ids`` to predict, whole words together."""
        words: list[list[int]] = []
        for position, token in enumerate(ids):
            if token in self.special_ids:
                continue
            joins = self.continuation_ids is not None and token in self.continuation_ids
            if joins and words and words[-1][-1] == position - 1:
                words[-1].append(position)
            else:
                words.append([position])
        maskable = sum(len(word) for word in words)
        count = max(1, round(maskable * self.mlm_probability)) if maskable else 0
        chosen: list[int] = []
        for w in torch.randperm(len(words), generator=generator).tolist():
            if len(chosen) >= count:
                break
            if len(chosen) + len(words[w]) <= count:
                chosen.extend(words[w])
        return chosen

    def select(self, ids: Tensor, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """ids (B, T) and real (B, T) bool -> the positions to predict (B, T) bool: per row a
        uniformly random set of the maskable tokens, all rows at once (token masking), or
        ``choose`` row by row (whole-word masking)."""
        if self.continuation_ids is not None:
            chosen = torch.zeros_like(ids, dtype=torch.bool)
            for row in range(len(ids)):
                chosen[row, self.choose(ids[row][real[row]].tolist(), generator)] = True
            return chosen
        maskable = real & ~torch.isin(ids, self.specials)
        available = maskable.sum(1)
        count = (available.double() * self.mlm_probability).round().clamp(min=1)
        count = torch.where(available > 0, count, 0)
        scores = torch.rand(ids.shape, generator=generator).masked_fill(~maskable, 2.0)
        rank = scores.argsort(1).argsort(1)  # the maskable positions first, in random order
        return rank < count[:, None]

    def mask(
        self, ids: Tensor, chosen: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """ids (B, T), chosen (B, T) bool -> inputs with the 80/10/10 replacement, labels."""
        labels = ids.masked_fill(~chosen, IGNORE_INDEX)
        draw = torch.rand(ids.shape, generator=generator)
        to_mask = chosen & (draw < self.mask_token_prob)
        to_random = chosen & ~to_mask & (draw < self.mask_token_prob + self.random_token_prob)
        picks = torch.randint(len(self.random_ids), ids.shape, generator=generator)
        inputs = ids.masked_fill(to_mask, self.mask_id)
        inputs = torch.where(to_random, self.random_ids[picks], inputs)
        return inputs, labels

    def mask_example(self, example: dict, generator: torch.Generator | None = None) -> dict:
        """``example`` with its masking fixed (``input_ids`` masked, ``labels`` added)."""
        ids = torch.as_tensor(example["input_ids"])[None]
        chosen = self.select(ids, torch.ones_like(ids, dtype=torch.bool), generator)
        inputs, labels = self.mask(ids, chosen, generator)
        return {**example, "input_ids": inputs[0], "labels": labels[0]}

    def __call__(self, examples: Sequence[dict]) -> dict[str, Tensor]:
        ids, attention_mask = pad_sequences([e["input_ids"] for e in examples], self.pad_id)
        segments, _ = pad_sequences([e["token_type_ids"] for e in examples], 0)
        if "labels" in examples[0]:
            labels, _ = pad_sequences([e["labels"] for e in examples], IGNORE_INDEX)
            inputs = ids
        else:
            inputs, labels = self.mask(ids, self.select(ids, attention_mask))
        batch = {
            "input_ids": inputs,
            "token_type_ids": segments,
            "attention_mask": attention_mask,
            "labels": labels,
        }
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_labels"] = torch.tensor(
                [e["next_sentence_label"] for e in examples], dtype=torch.long
            )
        return batch
