"""TextCorpusDataModule: documents -> one stream -> shifted blocks, documents never split."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.data.text_corpus import TextCorpusDataModule
from attnlab.errors import DataError


def make(cache_dir, **kwargs) -> TextCorpusDataModule:
    args = {
        "source": {"embedded": "wiki_articles.jsonl.gz"},
        "sentences_column": "sentences",
        "tokenizer": {"vocab_size": 4000},
        "block_size": 64,
        "cache_dir": str(cache_dir),
    }
    return TextCorpusDataModule(**{**args, **kwargs})


@pytest.fixture(scope="module")
def wiki(tmp_path_factory) -> TextCorpusDataModule:
    datamodule = make(tmp_path_factory.mktemp("cache"))
    datamodule.setup()
    return datamodule


def test_targets_are_inputs_shifted_by_one(wiki) -> None:
    blocks = wiki.blocks("train")
    inputs, targets = (torch.stack(column) for column in zip(*blocks, strict=True))
    assert inputs.shape == targets.shape and inputs.size(1) == 64
    assert (inputs[:, 1:] == targets[:, :-1]).all()
    assert (inputs[1:, 0] == targets[:-1, -1]).all()  # blocks are contiguous in the stream


def test_documents_end_with_separator_and_splits_are_disjoint(wiki) -> None:
    sep = wiki.tokenizer.token_id("[SEP]")
    streams = {name: stream[:] for name, stream in wiki.streams.items()}
    sizes = {name: len(stream) for name, stream in streams.items()}
    assert all(stream[-1] == sep for stream in streams.values())
    assert sizes["train"] > 4 * sizes["validation"] > 0 and sizes["test"] > 0
    documents = {
        name: {tuple(doc) for doc in _split_on(stream.tolist(), sep)}
        for name, stream in streams.items()
    }
    assert not documents["train"] & documents["validation"]
    assert not documents["train"] & documents["test"]


def _split_on(stream: list[int], sep: int) -> list[list[int]]:
    docs, current = [], []
    for token in stream:
        if token == sep:
            docs.append(current)
            current = []
        else:
            current.append(token)
    return docs


def test_unigram_perplexity_is_between_one_and_vocab(wiki) -> None:
    assert 1 < wiki.unigram_perplexity("validation") < wiki.vocab_size


def test_local_jsonl_and_txt_files(tmp_path) -> None:
    lines = [f"sentence number {i} talks about the river and the town ." for i in range(400)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines))
    records = [{"body": " ".join(lines[i : i + 4])} for i in range(0, 400, 4)]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    for files, column in (("corpus.txt", "text"), ("corpus.jsonl", "body")):
        datamodule = make(
            tmp_path / "cache",
            source={"files": str(tmp_path / files)},
            sentences_column=None,
            text_column=column,
            tokenizer={"vocab_size": 200, "min_frequency": 1},
            block_size=8,
        )
        datamodule.setup()
        batch = next(iter(datamodule.train_dataloader()))
        assert batch["input_ids"].shape[1] == 8
        assert "river" in datamodule.tokenizer.decode(datamodule.streams["train"][:40].tolist())


def test_too_little_text_for_a_block_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "tiny.txt").write_text("\n".join(f"a b c {i}" for i in range(30)))
    datamodule = make(
        tmp_path / "cache",
        source={"files": str(tmp_path / "tiny.txt")},
        sentences_column=None,
        tokenizer={"vocab_size": 100, "min_frequency": 1},
        block_size=512,
    )
    with pytest.raises(DataError, match="block_size"):
        datamodule.setup()


def test_missing_sentences_column_names_the_key(tmp_path) -> None:
    datamodule = make(tmp_path / "cache", sentences_column="paragraphs")
    with pytest.raises(DataError, match="data.sentences_column"):
        datamodule.setup()
