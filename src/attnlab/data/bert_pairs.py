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

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from attnlab.data.base import TokenizedDataModule
from attnlab.data.collate import pad_sequences
from attnlab.data.sources import DataError, load_splits, require_columns
from attnlab.data.text_corpus import documents
from attnlab.data.tokenization import SPECIAL_TOKENS, TextTokenizer, build_tokenizer

IGNORE_INDEX = -100  # label of positions that are not predicted (cross_entropy's default)
IS_NEXT, NOT_NEXT = 0, 1

Document = list[list[int]]  # a document: its sentences as token ids


def truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Shorten A and B in place to ``max_tokens`` together: one token at a time from the longer
    one, at its front or its back at random (so neither end is always the one kept)."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def pair_example(a: list[int], b: list[int], cls_id: int, sep_id: int, label: int) -> dict:
    """``[CLS] A [SEP] B [SEP]``, segment 0 for [CLS], A and the first [SEP], 1 for the rest."""
    return {
        "input_ids": [cls_id, *a, sep_id, *b, sep_id],
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
        "next_sentence_label": label,
    }


def _target_length(max_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    """Mostly ``max_tokens``; sometimes shorter, so the model also sees short inputs."""
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def create_pairs(
    docs: Sequence[Document],
    max_seq_length: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    next_sentence_prob: float = 0.5,
) -> list[dict]:
    """NSP + MLM examples from every document, in document order (the loader shuffles)."""
    if len(docs) < 2:
        raise DataError(
            f"next-sentence prediction needs at least 2 documents (random B segments come from "
            f"another document), got {len(docs)}: add documents or set data.nsp=false"
        )
    max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    examples = []
    for doc_index, doc in enumerate(docs):
        target = _target_length(max_tokens, short_seq_prob, rng)
        chunk: list[list[int]] = []
        length = 0
        i = 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                random_next = rng.random() < next_sentence_prob
                if len(chunk) == 1 and not random_next and i < len(doc) - 1:
                    i += 1  # one long sentence: its successor becomes B (keeps NSP at 50/50)
                    chunk.append(doc[i])
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for sentence in chunk[:a_end] for t in sentence]
                if len(chunk) == 1 or random_next:
                    b = _random_segment(docs, doc_index, target - len(a), rng)
                    i -= len(chunk) - a_end  # the unused sentences are read again
                    label = NOT_NEXT
                else:
                    b = [t for sentence in chunk[a_end:] for t in sentence]
                    label = IS_NEXT
                truncate_pair(a, b, max_tokens, rng)
                examples.append(pair_example(a, b, cls_id, sep_id, label))
                chunk, length = [], 0
                target = _target_length(max_tokens, short_seq_prob, rng)
            i += 1
    return examples


def _random_segment(
    docs: Sequence[Document], doc_index: int, target: int, rng: random.Random
) -> list[int]:
    """Consecutive sentences of another document, from a random start, until ``target`` tokens."""
    other = rng.randrange(len(docs) - 1)
    other += other >= doc_index  # any document but this one
    doc = docs[other]
    tokens: list[int] = []
    for sentence in doc[rng.randrange(len(doc)) :]:
        tokens.extend(sentence)
        if len(tokens) >= target:
            break
    return tokens


def create_segments(
    docs: Sequence[Document],
    max_seq_length: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
) -> list[dict]:
    """MLM-only examples: each document's tokens cut into contiguous ``[CLS] x [SEP]``."""
    max_tokens = max_seq_length - 2
    examples = []
    for doc in docs:
        stream = [t for sentence in doc for t in sentence]
        start = 0
        while start < len(stream):
            piece = stream[start : start + _target_length(max_tokens, short_seq_prob, rng)]
            start += len(piece)
            examples.append(
                {"input_ids": [cls_id, *piece, sep_id], "token_type_ids": [0] * (len(piece) + 2)}
            )
    return examples


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
        self.random_ids = random_ids
        self.mlm_probability = mlm_probability
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self.continuation_ids = set(continuation_ids) if continuation_ids is not None else None

    def choose(self, ids: Sequence[int], generator: torch.Generator | None = None) -> list[int]:
        """The positions of ``ids`` to predict."""
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
        ids = torch.tensor([example["input_ids"]])
        chosen = torch.zeros_like(ids, dtype=torch.bool)
        chosen[0, self.choose(example["input_ids"], generator)] = True
        inputs, labels = self.mask(ids, chosen, generator)
        return {**example, "input_ids": inputs[0].tolist(), "labels": labels[0].tolist()}

    def __call__(self, examples: Sequence[dict]) -> dict[str, Tensor]:
        ids, attention_mask = pad_sequences([e["input_ids"] for e in examples], self.pad_id)
        segments, _ = pad_sequences([e["token_type_ids"] for e in examples], 0)
        if "labels" in examples[0]:
            labels, _ = pad_sequences([e["labels"] for e in examples], IGNORE_INDEX)
            inputs = ids
        else:
            chosen = torch.zeros_like(ids, dtype=torch.bool)
            for row, example in enumerate(examples):
                chosen[row, self.choose(example["input_ids"])] = True
            inputs, labels = self.mask(ids, chosen)
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


class BertPretrainingDataModule(TokenizedDataModule):
    """BERT pretraining examples from a hub dataset, local files or embedded Wikipedia.

    ``vocab_size`` and ``pad_id`` are ready before ``setup`` (``${datamodule:vocab_size}``).
    """

    def __init__(
        self,
        source: Mapping[str, Any],
        text_column: str = "text",
        sentences_column: str | None = "sentences",
        tokenizer: Mapping[str, Any] | None = None,
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
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 1234,
        cache_dir: str = "outputs/cache",
    ) -> None:
        super().__init__()
        if max_seq_length < (5 if nsp else 3):
            raise DataError(
                f"data.max_seq_length={max_seq_length} leaves no room for tokens after [CLS] and "
                f"[SEP]: use {5 if nsp else 3} or more (BERT uses 128 or 512)"
            )
        if dupe_factor < 1:
            raise DataError(f"data.dupe_factor={dupe_factor} must be >= 1")
        self.source = dict(source)
        self.text_column = text_column
        self.sentences_column = sentences_column
        self.tokenizer_args = {**(tokenizer or {}), "max_length": None}
        self.nsp = nsp
        self.max_seq_length = max_seq_length
        self.short_seq_prob = short_seq_prob
        self.next_sentence_prob = next_sentence_prob
        self.dupe_factor = dupe_factor
        self.fresh_pairs_each_epoch = fresh_pairs_each_epoch
        self._train_docs: list[Document] = []
        self.masking = {
            "mlm_probability": mlm_probability,
            "mask_token_prob": mask_token_prob,
            "random_token_prob": random_token_prob,
        }
        self.whole_word_masking = whole_word_masking
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.tokenizer: TextTokenizer | None = None
        self.examples: dict[str, list[dict]] = {}

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

    def _documents(self, raw: Any) -> dict[str, list[list[str]]]:
        column = {"sentences_column": self.sentences_column} if self.sentences_column else {}
        require_columns(raw["train"], column or {"text_column": self.text_column})
        if self.sentences_column and isinstance(raw["train"][0][self.sentences_column], str):
            raise DataError(
                f"data.sentences_column='{self.sentences_column}' holds strings, not lists of "
                "sentences: set data.sentences_column=null to read data.text_column line by line"
            )
        docs = {}
        for name, split in raw.items():
            docs[name] = documents(split, self.text_column, self.sentences_column)
            if not docs[name]:
                raise DataError(
                    f"the '{name}' split has no document with a sentence (column "
                    f"'{self.sentences_column or self.text_column}'): check the data columns"
                )
        return docs

    def _tokenize(self, docs: list[list[str]]) -> list[Document]:
        """Sentences -> ids, keeping document boundaries; empty sentences and documents dropped."""
        flat = self.tokenizer.encode([s for doc in docs for s in doc])
        out, start = [], 0
        for doc in docs:
            sentences = [ids for ids in flat[start : start + len(doc)] if ids]
            start += len(doc)
            if sentences:
                out.append(sentences)
        return out

    def _load(self) -> None:
        raw = load_splits(
            **self.source,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        docs = self._documents(raw)
        if self.tokenizer is None:  # else restored from a checkpoint: keep its ids
            texts = [" ".join(doc) for doc in docs["train"]]
            self.tokenizer = build_tokenizer(texts, self.cache_dir, **self.tokenizer_args)
        for token in ("[CLS]", "[SEP]", "[MASK]"):
            self.tokenizer.token_id(token)  # a clear error when the vocabulary lacks one
        # Special tokens typed in text ("[MASK]", "[SEP]") become their ids, not "[", "mask", "]".
        self.tokenizer.tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
        collator = self.collator()
        for index, (name, split_docs) in enumerate(docs.items()):
            token_docs = self._tokenize(split_docs)
            if name == "train":
                self._train_docs = token_docs
            examples = self._examples(token_docs, random.Random(self.seed * 1000 + index), name)
            if name != "train":  # masked once: the same positions every epoch and run
                generator = torch.Generator().manual_seed(self.seed + index)
                examples = [collator.mask_example(e, generator) for e in examples]
            self.examples[name] = examples

    def _examples(self, token_docs: list[Document], rng: random.Random, split: str) -> list[dict]:
        """Pairs (NSP) or segments of ``token_docs``: ``dupe_factor`` passes for train."""
        cls_id, sep_id = self.tokenizer.token_id("[CLS]"), self.tokenizer.token_id("[SEP]")
        examples = []
        for _ in range(self.dupe_factor if split == "train" else 1):
            if self.nsp:
                examples += create_pairs(
                    token_docs,
                    self.max_seq_length,
                    rng,
                    cls_id,
                    sep_id,
                    self.short_seq_prob,
                    self.next_sentence_prob,
                )
            else:
                examples += create_segments(
                    token_docs, self.max_seq_length, rng, cls_id, sep_id, self.short_seq_prob
                )
        return examples

    @property
    def train_documents(self) -> list[Document]:
        """The training documents as token ids: each epoch's pairs are cut from them."""
        return self._train_docs

    def train_examples(self, epoch: int) -> list[dict]:
        """The training examples of ``epoch``: with ``fresh_pairs_each_epoch`` every epoch cuts
        the documents anew and draws new NotNext segments (seeded by epoch), so NSP must learn
        what makes B follow A rather than memorise a fixed set of pairs; else epoch 0's."""
        if not self.fresh_pairs_each_epoch or epoch == 0:
            return self.examples["train"]
        return self._examples(self._train_docs, random.Random(self.seed * 1000 + epoch), "train")

    def setup(self, stage: str | None = None) -> None:
        if not self.examples:
            self._load()

    def unigram_accuracy(self, split: str = "validation") -> float:
        """MLM accuracy of always predicting the most frequent token of the training split.

        The floor a masked LM must beat: it knows which token is most common, not context.
        """
        specials = self.collator().special_ids
        counts = Counter(
            t for e in self.examples["train"] for t in e["input_ids"] if t not in specials
        )
        top = counts.most_common(1)[0][0]
        labels = [t for e in self.examples[split] for t in e["labels"] if t != IGNORE_INDEX]
        return sum(t == top for t in labels) / len(labels)

    def batch(self, split: str, count: int) -> dict[str, Tensor]:
        """The first ``count`` examples of ``split`` as one batch (callbacks, scripts)."""
        return self.collator()(self.examples[split][:count])

    def split_loader(self, split: str, train: bool) -> DataLoader:
        examples = self.examples[split]
        if train and self.trainer is not None:  # reloaded every epoch (see the experiment)
            examples = self.train_examples(self.trainer.current_epoch)
        return self.dataloader(
            examples,
            batch_size=self.batch_size,
            shuffle=train,
            collate_fn=self.collator(),
        )
