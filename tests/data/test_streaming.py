"""Streaming (source.streaming=true): local files read as streams give the blocks and segments
the token cache gives, tokenized as read; what a stream cannot do is a clear error."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from attnlab.data.bert_pairs import BertPretrainingDataModule
from attnlab.data.collate import IGNORE_INDEX
from attnlab.data.text_corpus import TextCorpusDataModule
from attnlab.errors import DataError

WORDS = [
    "the",
    "city",
    "river",
    "town",
    "was",
    "built",
    "in",
    "the",
    "middle",
    "ages",
    "and",
    "grew",
    "into",
    "a",
    "centre",
    "of",
    "trade",
]


def _files(folder: Path, splits=("train", "validation", "test")) -> dict[str, str]:
    rng = random.Random(0)
    files = {}
    for split in splits:
        lines = [
            json.dumps({"sentences": [" ".join(rng.choices(WORDS, k=8)) + " ." for _ in range(5)]})
            for _ in range(30)
        ]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        files[split] = str(folder / f"{split}.jsonl")
    return files


def _settings(tmp_path: Path, **overrides) -> dict:
    return {
        "source": {"files": _files(tmp_path), "streaming": True},
        "sentences_column": "sentences",
        "tokenizer": {"vocab": "wiki-wordpiece-8k"},
        "cache_dir": str(tmp_path / "cache"),
        "batch_size": 4,
        **overrides,
    }


def test_streamed_blocks_are_the_cached_blocks(tmp_path) -> None:
    streamed = TextCorpusDataModule(block_size=16, **_settings(tmp_path))
    streamed.setup()
    batch = next(iter(streamed.train_dataloader()))
    assert batch["input_ids"].shape == (4, 16)
    assert not list((tmp_path / "cache").glob("tokens/*"))  # a stream caches no tokens
    settings = _settings(tmp_path)
    settings["source"]["streaming"] = False
    cached = TextCorpusDataModule(block_size=16, **settings)
    cached.setup()
    expected = cached.blocks("validation")
    blocks = list(streamed.blocks("validation"))
    assert len(blocks) == len(expected) > 10
    for i, (inputs, targets) in enumerate(blocks):
        assert torch.equal(inputs, expected[i][0]) and torch.equal(targets, expected[i][1])


def test_streamed_mlm_segments_are_masked_and_validation_masks_are_fixed(tmp_path) -> None:
    datamodule = BertPretrainingDataModule(nsp=False, max_seq_length=24, **_settings(tmp_path))
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    cls_id = datamodule.tokenizer.token_id("[CLS]")
    assert (batch["input_ids"][:, 0] == cls_id).all() and batch["input_ids"].shape[1] <= 24
    assert (batch["labels"] != IGNORE_INDEX).any()
    first, again = datamodule.batch("validation", 8), datamodule.batch("validation", 8)
    assert torch.equal(first["labels"], again["labels"])
    assert torch.equal(first["input_ids"], again["input_ids"])


def test_what_a_stream_cannot_do_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="data.nsp=false"):
        BertPretrainingDataModule(nsp=True, **_settings(tmp_path)).setup()
    with pytest.raises(DataError, match="cannot train a vocabulary"):
        TextCorpusDataModule(**_settings(tmp_path, tokenizer={"vocab": None})).setup()
    only_train = {"files": _files(tmp_path, ["train"])["train"], "streaming": True}
    with pytest.raises(DataError, match=r"no 'validation' split.*source.files.validation=PATH"):
        TextCorpusDataModule(**_settings(tmp_path, source=only_train)).setup()
    with pytest.raises(DataError, match="data.text_column"):
        settings = _settings(tmp_path, sentences_column=None, text_column="body")
        TextCorpusDataModule(**settings).setup()
