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
Face: 0 = B continues A (IsNext), 1 = B is random (NotNext). ``pair_objective='sop'`` makes
ALBERT's sentence-order pairs instead: B always continues A, and half the pairs are swapped
(1 = swapped), so the label cannot be read off a change of topic. With ``nsp=False`` (RoBERTa-style
MLM only) each document's tokens are cut into contiguous ``[CLS] segment [SEP]`` examples.

Masking is dynamic: ``MLMCollator`` picks new positions for every training batch (15% of the
real tokens, never [CLS]/[SEP]/padding; 80% -> [MASK], 10% -> a random token, 10% unchanged);
validation and test are masked once, with a seeded generator, so their metrics are comparable
across epochs and runs.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from attnlab.data.array_cache import derived_array
from attnlab.data.base import first_examples
from attnlab.data.collate import IGNORE_INDEX
from attnlab.data.corpus import CorpusDataModule
from attnlab.data.masking import MaskedOnce, MLMCollator
from attnlab.data.pretraining_examples import (
    PAIR_OBJECTIVES,
    PretrainingExamples,
    plan_pairs,
    plan_segments,
    segment_spans,
)
from attnlab.data.sources import SPLITS
from attnlab.data.streaming import StreamedMaskedOnce, StreamedSegments
from attnlab.data.tokenization import SPECIAL_TOKENS, TextTokenizer
from attnlab.errors import DataError


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
        pair_objective: str = "nsp",
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
        if pair_objective not in PAIR_OBJECTIVES:
            raise DataError(
                f"data.pair_objective={pair_objective} is not one of {', '.join(PAIR_OBJECTIVES)}"
            )
        super().__init__(**{"sentences_column": "sentences", **corpus})
        self.nsp = nsp
        self.max_seq_length = max_seq_length
        self.short_seq_prob = short_seq_prob
        self.next_sentence_prob = next_sentence_prob
        self.pair_objective = pair_objective
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
            "pair_objective": self.pair_objective,
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
                            self.pair_objective,
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
