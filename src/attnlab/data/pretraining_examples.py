"""BERT pretraining examples cut from a tokenized corpus: sentence pairs (MLM + NSP) or single
segments (MLM only), planned as integer arrays ``[start, end)`` into the split's flat tokens.

Pairs follow google-research/bert's ``create_pretraining_data.py``; the rules, and the one
departure, are in ``attnlab.data.bert_pairs``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from attnlab.data.token_cache import TokenizedSplit
from attnlab.errors import DataError

IS_NEXT, NOT_NEXT = 0, 1  # nsp: is B the text after A, or from another document?
IN_ORDER, SWAPPED = 0, 1  # sop (ALBERT): are the two consecutive segments in order, or swapped?
PAIR_OBJECTIVES = ("nsp", "sop")
SEGMENT = -1  # the label column of a single-segment (MLM only) example

Span = list[int]  # [start, end) in a split's flat token array


def truncate_pair(a: Span, b: Span, max_tokens: int, rng: random.Random) -> None:
    """Shorten spans A and B in place to ``max_tokens`` together: one token at a time from the
    longer one, at its front or its back at random (so neither end is always the one kept)."""
    while a[1] - a[0] + b[1] - b[0] > max_tokens:
        longer = a if a[1] - a[0] > b[1] - b[0] else b
        if rng.random() < 0.5:
            longer[0] += 1
        else:
            longer[1] -= 1


def _target_length(max_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    """Mostly ``max_tokens``; sometimes shorter, so the model also sees short inputs."""
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def plan_pairs(
    split: TokenizedSplit,
    max_seq_length: int,
    rng: random.Random,
    short_seq_prob: float = 0.1,
    next_sentence_prob: float = 0.5,
    objective: str = "nsp",
) -> np.ndarray:
    """Sentence-pair + MLM examples of every document, in document order (the loader shuffles),
    as rows (first start, first end, second start, second end, label) of token offsets: a pass
    over sentence lengths only, the tokens stay in the cache.

    ``objective`` "nsp": with probability ``next_sentence_prob`` B comes from another document
    (NOT_NEXT). "sop" (ALBERT's sentence-order prediction): B always continues A, and with that
    probability the two are swapped (SWAPPED), so topic gives nothing away; a document's last
    sentence left alone, with nothing after it, is not used."""
    if objective not in PAIR_OBJECTIVES:
        raise DataError(f"unknown pair objective '{objective}': use one of {PAIR_OBJECTIVES}")
    if objective == "nsp" and split.num_documents < 2:
        raise DataError(
            f"next-sentence prediction needs at least 2 documents (random B segments come from "
            f"another document), got {split.num_documents}: add documents or set data.nsp=false"
        )
    max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    rows = []
    for doc, (first_sentence, end_sentence) in enumerate(_pairwise(split.documents.tolist())):
        bounds = split.sentences[first_sentence : end_sentence + 1].tolist()
        count = len(bounds) - 1
        target = _target_length(max_tokens, short_seq_prob, rng)
        first = i = 0  # the chunk being gathered is sentences first..i
        while i < count:
            if i == count - 1 or bounds[i + 1] - bounds[first] >= target:
                random_next = objective == "nsp" and rng.random() < next_sentence_prob
                if i == first and not random_next and i < count - 1:
                    i += 1  # one long sentence: its successor becomes B (keeps NSP at 50/50)
                size = i - first + 1
                if size == 1 and objective == "sop":
                    break  # the document's last sentence: no second segment to order
                a_end = first + (rng.randint(1, size - 1) if size >= 2 else 1)
                a = [bounds[first], bounds[a_end]]
                if size == 1 or random_next:
                    b = _random_segment(split, doc, target - (a[1] - a[0]), rng)
                    i = a_end - 1  # the unused sentences are read again
                    label = NOT_NEXT
                else:
                    b = [bounds[a_end], bounds[i + 1]]
                    label = IS_NEXT
                truncate_pair(a, b, max_tokens, rng)
                if objective == "sop" and rng.random() < next_sentence_prob:
                    a, b, label = b, a, SWAPPED
                rows.append((*a, *b, label))
                first = i + 1
                target = _target_length(max_tokens, short_seq_prob, rng)
            i += 1
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def _pairwise(offsets: list[int]) -> zip:
    return zip(offsets[:-1], offsets[1:], strict=True)


def _random_segment(split: TokenizedSplit, doc: int, target: int, rng: random.Random) -> Span:
    """Consecutive sentences of another document, from a random start, until ``target`` tokens."""
    other = rng.randrange(split.num_documents - 1)
    other += other >= doc  # any document but this one
    first, end = int(split.documents[other]), int(split.documents[other + 1])
    start = first + rng.randrange(end - first)
    begin = int(split.sentences[start])
    ends = split.sentences[start + 1 : end + 1]
    reached = int(np.searchsorted(ends, begin + target))  # the first sentence end at target
    return [begin, int(ends[min(reached, len(ends) - 1)])]


def plan_segments(
    split: TokenizedSplit, max_seq_length: int, rng: random.Random, short_seq_prob: float = 0.1
) -> np.ndarray:
    """MLM-only examples: each document's tokens cut into contiguous ``[CLS] x [SEP]``, as rows
    (start, end, 0, 0, SEGMENT) of token offsets."""
    starts, ends = split.document_tokens()
    rows = [
        (start, stop, 0, 0, SEGMENT)
        for doc in zip(starts.tolist(), ends.tolist(), strict=True)
        for start, stop in segment_spans(*doc, rng, max_seq_length, short_seq_prob)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def segment_spans(
    start: int, end: int, rng: random.Random, max_seq_length: int, short_seq_prob: float
) -> Iterator[tuple[int, int]]:
    """Tokens ``start`` to ``end`` of one document cut into contiguous segments."""
    max_tokens = max_seq_length - 2  # [CLS], [SEP]
    while start < end:
        stop = min(start + _target_length(max_tokens, short_seq_prob, rng), end)
        yield start, stop
        start = stop


class PretrainingExamples(Dataset):
    """Examples sliced from a split's tokens by a plan of ``plan_pairs`` or ``plan_segments``:
    ``[CLS] A [SEP] B [SEP]`` with segment ids 0 up to the first [SEP] and 1 after it, or
    ``[CLS] A [SEP]``."""

    def __init__(self, split: TokenizedSplit, plan: np.ndarray, cls_id: int, sep_id: int) -> None:
        self.split = split
        self.plan = plan
        self.cls_id = cls_id
        self.sep_id = sep_id

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> dict[str, Any]:
        a_start, a_end, b_start, b_end, label = self.plan[index].tolist()
        tokens = self.split.tokens
        parts = [[self.cls_id], tokens[a_start:a_end], [self.sep_id]]
        if label != SEGMENT:
            parts += [tokens[b_start:b_end], [self.sep_id]]
        ids = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        segments = torch.zeros_like(ids)
        segments[a_end - a_start + 2 :] = 1
        example = {"input_ids": ids, "token_type_ids": segments}
        if label != SEGMENT:
            example["next_sentence_label"] = label
        return example
