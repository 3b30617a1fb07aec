"""Documents -> BERT pretraining examples: sentence pairs (MLM + NSP) or single segments (MLM).

Pairs follow google-research/bert's ``create_pretraining_data.py``: consecutive sentences of a
document are gathered until they fill ``max_seq_length - 3`` tokens (a random shorter target
with probability ``short_seq_prob``), the chunk is cut into A and B at a random sentence
boundary, and with probability ``next_sentence_prob`` B is replaced by sentences from another
document (NotNext; the unused sentences of the chunk go back into the document). One departure:
google's script makes every one-sentence chunk NotNext, which tilts the labels (55/45 at 64
tokens); here an IsNext one-sentence chunk takes the next sentence as B. The example is
``[CLS] A [SEP] B [SEP]`` with segment ids 0 up to the first [SEP] and 1 after it, truncated one
token at a time from the longer side, at its front or back at random. NSP labels follow Hugging
Face: 0 = B continues A (IsNext), 1 = B is random (NotNext). With ``nsp=False`` (RoBERTa-style
MLM only) each document's tokens are cut into contiguous ``[CLS] segment [SEP]`` examples.

Masking is dynamic: ``MLMCollator`` picks new positions for every training batch (15% of the
real tokens, never [CLS]/[SEP]/padding; 80% -> [MASK], 10% -> a random token, 10% unchanged);
validation and test are masked once, with a seeded generator, so their metrics are comparable
across epochs and runs.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from attnlab.data.array_cache import derived_array
from attnlab.data.base import first_examples
from attnlab.data.collate import IGNORE_INDEX, pad_sequences
from attnlab.data.corpus import CorpusDataModule
from attnlab.data.sources import SPLITS
from attnlab.data.streaming import StreamedMaskedOnce, StreamedSegments
from attnlab.data.token_cache import TokenizedSplit
from attnlab.data.tokenization import SPECIAL_TOKENS, TextTokenizer
from attnlab.errors import DataError

IS_NEXT, NOT_NEXT = 0, 1
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
) -> np.ndarray:
    """NSP + MLM examples of every document, in document order (the loader shuffles), as rows
    (A start, A end, B start, B end, label) of token offsets: a pass over sentence lengths only,
    the tokens stay in the cache."""
    if split.num_documents < 2:
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
                random_next = rng.random() < next_sentence_prob
                if i == first and not random_next and i < count - 1:
                    i += 1  # one long sentence: its successor becomes B (keeps NSP at 50/50)
                size = i - first + 1
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


class BertPretrainingDataModule(CorpusDataModule):
    """BERT pretraining examples from a hub dataset, local files or embedded Wikipedia, cut
    from the corpus's token cache.

    ``vocab_size`` and ``pad_id`` are ready before ``setup`` (``${datamodule:vocab_size}``).
    """

    def __init__(
        self,
        nsp: bool = True,
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        next_sentence_prob: float = 0.5,
        dupe_factor: int = 1,
        fresh_pairs_each_epoch: bool = True,
        mlm_probability: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        whole_word_masking: bool = False,
        **corpus: Any,
    ) -> None:
        """``corpus``: the source, columns, tokenizer, split and loader settings
        (``CorpusDataModule``); documents are read from a column of sentence lists by default."""
        if max_seq_length < (5 if nsp else 3):
            raise DataError(
                f"data.max_seq_length={max_seq_length} leaves no room for tokens after [CLS] and "
                f"[SEP]: use {5 if nsp else 3} or more (BERT uses 128 or 512)"
            )
        if dupe_factor < 1:
            raise DataError(f"data.dupe_factor={dupe_factor} must be >= 1")
        super().__init__(**{"sentences_column": "sentences", **corpus})
        self.nsp = nsp
        self.max_seq_length = max_seq_length
        self.short_seq_prob = short_seq_prob
        self.next_sentence_prob = next_sentence_prob
        self.dupe_factor = dupe_factor
        self.fresh_pairs_each_epoch = fresh_pairs_each_epoch
        self.masking = {
            "mlm_probability": mlm_probability,
            "mask_token_prob": mask_token_prob,
            "random_token_prob": random_token_prob,
        }
        self.whole_word_masking = whole_word_masking
        self.examples: dict[str, Dataset] = {}

    def prepare_tokenizer(self, tokenizer: TextTokenizer) -> None:
        for token in ("[CLS]", "[SEP]", "[MASK]"):
            tokenizer.token_id(token)  # a clear error when the vocabulary lacks one
        # Special tokens typed in text ("[MASK]", "[SEP]") become their ids, not "[", "mask", "]".
        tokenizer.tokenizer.add_special_tokens(list(SPECIAL_TOKENS))

    def collator(self) -> MLMCollator:
        """The masking collator for this tokenizer and the configured rates."""
        tokenizer = self._ready().tokenizer
        vocab = tokenizer.vocab()
        special = [i for i, t in enumerate(vocab) if t.startswith("[") and t.endswith("]")]
        specials = set(special)
        random_ids = torch.tensor([i for i in range(len(vocab)) if i not in specials])
        continuation = [i for i, t in enumerate(vocab) if t.startswith("##")]
        return MLMCollator(
            pad_id=tokenizer.pad_id,
            mask_id=tokenizer.token_id("[MASK]"),
            special_ids=[tokenizer.token_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")],
            random_ids=random_ids,
            continuation_ids=continuation if self.whole_word_masking else None,
            **self.masking,
        )

    def _load(self) -> None:
        super()._load()
        if self.streaming:
            if self.nsp:
                raise DataError(
                    "data.nsp=true needs random access to other documents (for NotNext "
                    "segments), which a stream does not give: set data.nsp=false (MLM only), "
                    "or source.streaming=false (the token cache)"
                )
            return
        collator = self.collator()
        for index, name in enumerate(self.splits):
            examples = self._examples(name, self.seed * 1000 + index)
            if name != "train":  # masked once: the same positions every epoch and run
                examples = MaskedOnce(examples, collator, self.seed * 1000 + index)
            self.examples[name] = examples

    def _examples(self, split: str, seed: int) -> PretrainingExamples:
        """Pairs (NSP) or segments of ``split`` drawn with ``seed``: ``dupe_factor`` passes for
        train. Their plan is kept in the token cache, so a run that starts again (or another
        rank) reads it instead of cutting the documents anew."""
        tokens = self.splits[split]
        rules = {
            "nsp": self.nsp,
            "max_seq_length": self.max_seq_length,
            "short_seq_prob": self.short_seq_prob,
            "next_sentence_prob": self.next_sentence_prob,
            "passes": self.dupe_factor if split == "train" else 1,
            "seed": seed,
        }

        def plan() -> np.ndarray:
            rng = random.Random(seed)
            plans = []
            for _ in range(rules["passes"]):
                if self.nsp:
                    plans.append(
                        plan_pairs(
                            tokens,
                            self.max_seq_length,
                            rng,
                            self.short_seq_prob,
                            self.next_sentence_prob,
                        )
                    )
                else:
                    plans.append(
                        plan_segments(tokens, self.max_seq_length, rng, self.short_seq_prob)
                    )
            return np.concatenate(plans)

        plans = derived_array(self.cache_folder, f"{split}-plan", rules, plan)
        cls_id, sep_id = self.tokenizer.token_id("[CLS]"), self.tokenizer.token_id("[SEP]")
        return PretrainingExamples(tokens, plans, cls_id, sep_id)

    def train_examples(self, epoch: int) -> Dataset:
        """The training examples of ``epoch``: with ``fresh_pairs_each_epoch`` every epoch cuts
        the documents anew and draws new NotNext segments (seeded by epoch), so NSP must learn
        what makes B follow A rather than memorise a fixed set of pairs; else epoch 0's."""
        if not self.fresh_pairs_each_epoch or epoch == 0:
            return self.examples["train"]
        return self._examples("train", self.seed * 1000 + epoch)

    def unigram_accuracy(self, split: str = "validation") -> float:
        """MLM accuracy of always predicting the most frequent token of the training split.

        The floor a masked LM must beat: it knows which token is most common, not context.
        """
        counts = np.bincount(self.splits["train"].tokens, minlength=self.vocab_size)
        counts[sorted(self.collator().special_ids)] = 0
        top = int(counts.argmax())
        labels = torch.cat([e["labels"] for e in self.examples[split]])
        labels = labels[labels != IGNORE_INDEX]
        return float((labels == top).double().mean())

    def streamed_examples(self, split: str) -> IterableDataset:
        """Segments of a streamed split (``source.streaming``), validation and test masked once."""
        index = SPLITS.index(split)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        cut = functools.partial(
            segment_spans, max_seq_length=self.max_seq_length, short_seq_prob=self.short_seq_prob
        )
        cls_id, sep_id = self.tokenizer.token_id("[CLS]"), self.tokenizer.token_id("[SEP]")
        seed = self.seed * 1000 + (epoch if split == "train" else index)
        examples = StreamedSegments(self.documents_stream(split), cut, cls_id, sep_id, seed)
        if split == "train":
            return examples
        return StreamedMaskedOnce(examples, self.collator().mask_example, seed)

    def batch(self, split: str, count: int) -> dict[str, Tensor]:
        examples = self.streamed_examples(split) if self.streaming else self.examples[split]
        return self.collator()(first_examples(examples, count))

    def split_loader(self, split: str, train: bool) -> DataLoader:
        if self.streaming:
            examples = self.streamed_examples(split)
        elif train and self.trainer is not None:  # reloaded every epoch (see the experiment)
            examples = self.train_examples(self.trainer.current_epoch)
        else:
            examples = self.examples[split]
        return self.dataloader(
            examples,
            batch_size=self.batch_size,
            shuffle=train,
            collate_fn=self.collator(),
        )
