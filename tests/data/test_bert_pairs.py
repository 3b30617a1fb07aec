"""BERT pretraining data: masking proportions and rules, pair layout, NSP balance and sources,
lengths, reproducibility and clear errors."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data.bert_pairs import BertPretrainingDataModule
from attnlab.data.collate import IGNORE_INDEX
from attnlab.data.masking import MLMCollator
from attnlab.data.pretraining_examples import (
    IN_ORDER,
    IS_NEXT,
    NOT_NEXT,
    SWAPPED,
    PretrainingExamples,
    plan_pairs,
    truncate_pair,
)
from attnlab.data.token_cache import TokenizedSplit
from attnlab.errors import DataError

MAX_LEN = 64
CLS, SEP = 2, 3


def _datamodule(cache_dir: Path, **overrides) -> BertPretrainingDataModule:
    args = {
        "source": {"embedded": "wiki_articles.jsonl.gz"},
        "tokenizer": {"vocab": "bert-base-uncased"},
        "max_seq_length": MAX_LEN,
        "cache_dir": str(cache_dir),
        **overrides,
    }
    return BertPretrainingDataModule(**args)


@pytest.fixture(scope="module")
def wiki(tmp_path_factory: pytest.TempPathFactory) -> BertPretrainingDataModule:
    dm = _datamodule(tmp_path_factory.mktemp("cache"))
    dm.setup()
    return dm


def _synthetic_docs(count: int = 6, sentences: int = 12) -> list[list[list[int]]]:
    """Sentence s of document d is the token 1000 * (d + 1) + s, repeated 1 to 15 times: a token
    tells where it came from."""
    rng = random.Random(0)
    return [
        [[1000 * (d + 1) + s] * rng.randint(1, 15) for s in range(sentences)] for d in range(count)
    ]


def _first(examples, count: int | None = None) -> list[dict]:
    return [examples[i] for i in range(min(count or len(examples), len(examples)))]


def _plans(datamodule: BertPretrainingDataModule) -> dict[str, np.ndarray]:
    """Each split's plan of example spans (the examples are sliced from the cache by it)."""
    return {
        name: getattr(examples, "examples", examples).plan
        for name, examples in datamodule.examples.items()
    }


def test_masking_proportions_over_many_batches(wiki: BertPretrainingDataModule) -> None:
    collator = wiki.collator()
    torch.manual_seed(0)
    examples = _first(wiki.examples["train"], 1024)
    chosen = maskable = masked = randomised = kept = 0
    for start in range(0, len(examples), 64):
        part = examples[start : start + 64]
        batch = collator(part)
        ids = torch.full_like(batch["input_ids"], wiki.pad_id)
        for row, example in enumerate(part):
            ids[row, : len(example["input_ids"])] = example["input_ids"]
        specials = torch.isin(ids, torch.tensor(sorted(collator.special_ids)))
        picked = batch["labels"] != IGNORE_INDEX
        maskable += int((~specials).sum())
        chosen += int(picked.sum())
        inputs = batch["input_ids"][picked]
        masked += int((inputs == collator.mask_id).sum())
        kept += int((inputs == ids[picked]).sum())
        randomised += int(((inputs != collator.mask_id) & (inputs != ids[picked])).sum())
        assert torch.equal(batch["labels"][picked], ids[picked])
        assert not (picked & specials).any()  # [CLS], [SEP] and padding are never chosen
        assert torch.equal(batch["input_ids"][~picked], ids[~picked])
    assert chosen / maskable == pytest.approx(0.15, abs=0.005)
    assert masked / chosen == pytest.approx(0.8, abs=0.015)
    assert randomised / chosen == pytest.approx(0.1, abs=0.01)
    assert kept / chosen == pytest.approx(0.1, abs=0.01)


def test_rates_and_split_are_config_values() -> None:
    collator = MLMCollator(
        pad_id=0,
        mask_id=4,
        special_ids=[0, 2, 3],
        random_ids=torch.arange(5, 50),
        mlm_probability=0.5,
        mask_token_prob=1.0,
        random_token_prob=0.0,
    )
    examples = [{"input_ids": [2, *range(5, 45), 3], "token_type_ids": [0] * 42}] * 8
    batch = collator(examples)
    picked = batch["labels"] != IGNORE_INDEX
    assert picked.sum(1).tolist() == [20] * 8
    assert (batch["input_ids"][picked] == 4).all()
    with pytest.raises(DataError, match="mask_token_prob"):
        MLMCollator(0, 4, [0], torch.arange(5, 9), mask_token_prob=0.9, random_token_prob=0.2)


def test_whole_word_masking_masks_a_word_with_all_its_pieces(
    wiki: BertPretrainingDataModule,
) -> None:
    collator = _datamodule(wiki.cache_dir, whole_word_masking=True)
    collator.tokenizer = wiki.tokenizer
    collator = collator.collator()
    continuation = torch.tensor(sorted(collator.continuation_ids))
    torch.manual_seed(1)
    for example in _first(wiki.examples["train"], 200):
        ids = example["input_ids"]
        picked = torch.zeros_like(ids, dtype=torch.bool)
        picked[collator.choose(ids.tolist())] = True
        special = torch.isin(ids, torch.tensor(sorted(collator.special_ids)))
        joins = torch.isin(ids, continuation)[1:] & ~special[:-1]  # a piece after a real token
        # a piece is chosen exactly when the token before it (its word) is
        assert torch.equal(picked[1:][joins], picked[:-1][joins])
        assert picked.sum() > 0


def test_pairs_have_the_bert_layout_and_segments(wiki: BertPretrainingDataModule) -> None:
    for example in _first(wiki.examples["train"]):
        ids, segments = example["input_ids"].tolist(), example["token_type_ids"].tolist()
        seps = [i for i, t in enumerate(ids) if t == wiki.tokenizer.token_id("[SEP]")]
        assert ids[0] == wiki.tokenizer.token_id("[CLS]")
        assert len(seps) == 2 and seps[1] == len(ids) - 1 and seps[0] >= 2
        assert segments == [0] * (seps[0] + 1) + [1] * (len(ids) - seps[0] - 1)
        assert len(ids) <= MAX_LEN


def test_nsp_labels_are_balanced(wiki: BertPretrainingDataModule) -> None:
    labels = Counter(e["next_sentence_label"] for e in _first(wiki.examples["train"]))
    assert labels[NOT_NEXT] / (labels[IS_NEXT] + labels[NOT_NEXT]) == pytest.approx(0.5, abs=0.04)


def test_pairs_come_from_the_right_documents() -> None:
    """IsNext: A and B from one document, B right after A; NotNext: B from another document."""
    split = TokenizedSplit.from_documents(_synthetic_docs())
    plan = plan_pairs(split, 40, random.Random(0), short_seq_prob=0.3)
    examples = _first(PretrainingExamples(split, plan, CLS, SEP))
    assert {e["next_sentence_label"] for e in examples} == {IS_NEXT, NOT_NEXT}
    for example in examples:
        ids = example["input_ids"].tolist()
        first_sep = ids.index(SEP)
        a, b = ids[1:first_sep], ids[first_sep + 1 : -1]
        assert a and b and len(ids) <= 40
        doc_a, doc_b = {t // 1000 for t in a}, {t // 1000 for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1
        if example["next_sentence_label"] == NOT_NEXT:
            assert doc_a != doc_b
        else:
            assert doc_a == doc_b and max(t % 1000 for t in a) < min(t % 1000 for t in b)


def test_sentence_order_pairs_are_consecutive_text_in_either_order() -> None:
    """SOP (ALBERT): both segments from one document, B right after A; SWAPPED puts B first.
    Half the pairs are swapped, and a document's last sentence alone is not used."""
    split = TokenizedSplit.from_documents(_synthetic_docs())
    plan = plan_pairs(split, 40, random.Random(0), short_seq_prob=0.3, objective="sop")
    labels = Counter()
    for example in _first(PretrainingExamples(split, plan, CLS, SEP)):
        ids = example["input_ids"].tolist()
        first_sep = ids.index(SEP)
        first, second = ids[1:first_sep], ids[first_sep + 1 : -1]
        assert first and second and len(ids) <= 40
        assert len({t // 1000 for t in first + second}) == 1  # one document
        earlier, later = (
            (second, first) if example["next_sentence_label"] == SWAPPED else (first, second)
        )
        assert max(t % 1000 for t in earlier) < min(t % 1000 for t in later)
        labels[example["next_sentence_label"]] += 1
    assert labels[SWAPPED] / (labels[SWAPPED] + labels[IN_ORDER]) == pytest.approx(0.5, abs=0.1)
    with pytest.raises(DataError, match="pair objective"):
        plan_pairs(split, 40, random.Random(0), objective="order")


def test_truncation_removes_from_the_longer_side_at_both_ends() -> None:
    rng = random.Random(0)
    fronts = backs = 0
    for _ in range(50):
        a, b = [0, 20], [100, 105]  # spans [start, end) of tokens
        truncate_pair(a, b, 15, rng)
        assert a[1] - a[0] == 10 and b == [100, 105]
        fronts += a[0] > 0
        backs += a[1] < 20
    assert fronts > 10 and backs > 10


def test_mlm_mode_makes_single_segments(tmp_path: Path, wiki: BertPretrainingDataModule) -> None:
    dm = _datamodule(wiki.cache_dir, nsp=False)
    dm.setup()
    sep = dm.tokenizer.token_id("[SEP]")
    for example in _first(dm.examples["train"]):
        ids = example["input_ids"]
        assert (ids == sep).sum() == 1 and ids[-1] == sep and len(ids) <= MAX_LEN
        assert set(example["token_type_ids"].tolist()) == {0}
    batch = dm.batch("validation", 4)
    assert "next_sentence_labels" not in batch


def test_same_seed_same_examples_and_masks(wiki: BertPretrainingDataModule) -> None:
    again = _datamodule(wiki.cache_dir)
    again.setup()
    plans, again_plans = _plans(wiki), _plans(again)
    assert all(np.array_equal(plans[name], again_plans[name]) for name in plans)
    assert torch.equal(
        again.batch("validation", 32)["input_ids"], wiki.batch("validation", 32)["input_ids"]
    )
    other = _datamodule(wiki.cache_dir, seed=7)
    other.setup()
    assert not np.array_equal(_plans(other)["train"], plans["train"])
    collator = wiki.collator()
    torch.manual_seed(3)
    first = collator(_first(wiki.examples["train"], 8))
    torch.manual_seed(3)
    second = collator(_first(wiki.examples["train"], 8))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_validation_is_masked_once_and_beats_no_baseline(wiki: BertPretrainingDataModule) -> None:
    batch = wiki.batch("validation", 16)
    assert torch.equal(batch["labels"], wiki.batch("validation", 16)["labels"])
    assert 0.02 < wiki.unigram_accuracy() < 0.1  # "the" is ~5% of the tokens


def _write_docs(path: Path, docs: list[dict]) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return str(path)


def test_clear_errors(tmp_path: Path, wiki: BertPretrainingDataModule) -> None:
    one_doc = _write_docs(tmp_path / "one.jsonl", [{"sentences": ["a b c.", "d e f."]}] * 1)
    source = {"files": {"train": one_doc, "validation": one_doc, "test": one_doc}}
    with pytest.raises(DataError, match="at least 2 documents"):
        _datamodule(wiki.cache_dir, source=source).setup()
    empty = _write_docs(tmp_path / "empty.jsonl", [{"sentences": [" ", ""]}] * 3)
    source = {"files": {"train": empty, "validation": empty, "test": empty}}
    with pytest.raises(DataError, match="no document with a sentence"):
        _datamodule(wiki.cache_dir, source=source).setup()
    strings = _write_docs(tmp_path / "strings.jsonl", [{"sentences": "a b c."}] * 3)
    source = {"files": {"train": strings, "validation": strings, "test": strings}}
    with pytest.raises(DataError, match="sentences_column=null"):
        _datamodule(wiki.cache_dir, source=source).setup()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    with pytest.raises(DataError, match=r"\[MASK\]"):
        _datamodule(wiki.cache_dir, tokenizer={"vocab": str(vocab)}).setup()
    with pytest.raises(DataError, match="max_seq_length=4"):
        _datamodule(wiki.cache_dir, max_seq_length=4)


def test_every_epoch_draws_fresh_training_pairs(wiki: BertPretrainingDataModule) -> None:
    """New cuts and NotNext segments each epoch (else a small model memorises the fixed pairs
    and NSP never generalises); the same epoch gives the same pairs, and epoch 0 is setup's."""
    assert wiki.train_examples(0) is wiki.examples["train"]
    first, again, second = (wiki.train_examples(e).plan for e in (1, 1, 2))
    assert np.array_equal(first, again) and not np.array_equal(first, second)
    assert not np.array_equal(first, wiki.examples["train"].plan)
    labels = first[:, 4]
    assert 0.4 < sum(labels) / len(labels) < 0.6
    wiki.fresh_pairs_each_epoch = False
    try:
        assert wiki.train_examples(3) is wiki.examples["train"]
    finally:
        wiki.fresh_pairs_each_epoch = True
