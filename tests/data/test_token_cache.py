"""The token cache: built once and shared by processes, read without the source, rebuilt when
stale or damaged, never left half-written; lazy blocks equal the token stream."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.data import array_cache
from attnlab.data import corpus as corpus_module
from attnlab.data.text_corpus import Blocks, TextCorpusDataModule, TokenStream
from attnlab.data.token_cache import TokenizedSplit, token_dtype
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


def _write_corpus(path: Path, documents: int = 40, offset: int = 0) -> Path:
    """``documents`` jsonl records of a few sentences of common words."""
    lines = []
    for d in range(offset, offset + documents):
        sentences = [
            " ".join(WORDS[(d + s + i) % len(WORDS)] for i in range(6 + s)) + " ." for s in range(4)
        ]
        lines.append(json.dumps({"sentences": sentences}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _datamodule(corpus: Path, cache_dir: Path, **overrides) -> TextCorpusDataModule:
    args = {
        "source": {"files": str(corpus)},
        "sentences_column": "sentences",
        "tokenizer": {"vocab": "wiki-wordpiece-8k"},
        "block_size": 16,
        "cache_dir": str(cache_dir),
        **overrides,
    }
    datamodule = TextCorpusDataModule(**args)
    datamodule.setup()
    return datamodule


def _folders(cache_dir: Path) -> list[Path]:
    return sorted(p for p in (cache_dir / "tokens").iterdir() if p.is_dir())


def test_a_warm_start_maps_the_cache_without_reading_the_source(tmp_path, monkeypatch) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    first = _datamodule(corpus, tmp_path / "cache")
    monkeypatch.setattr(corpus_module, "load_splits", lambda **_: pytest.fail("source read"))
    again = _datamodule(corpus, tmp_path / "cache")
    train = again.splits["train"]
    assert isinstance(train.tokens, np.memmap) and train.tokens.dtype == np.uint16
    assert np.array_equal(train.tokens, first.splits["train"].tokens)
    assert again.tokenizer.to_str() == first.tokenizer.to_str()
    assert len(_folders(tmp_path / "cache")) == 1


def test_a_changed_source_file_gets_a_new_cache(tmp_path) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    before = _datamodule(corpus, tmp_path / "cache").splits["train"].num_documents
    _write_corpus(corpus, documents=80)
    after = _datamodule(corpus, tmp_path / "cache").splits["train"].num_documents
    assert after > before
    assert len(_folders(tmp_path / "cache")) == 2


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    expected = np.array(_datamodule(corpus, tmp_path / "cache").splits["train"].tokens)
    (folder,) = _folders(tmp_path / "cache")
    tokens = folder / "train.tokens.bin"
    data = bytearray(tokens.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[10] ^= 0xFF  # the same size, one byte changed
    tokens.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=array_cache.__name__):
        rebuilt = _datamodule(corpus, tmp_path / "cache")
    assert "rebuilding" in caplog.text and "train.tokens.bin" in caplog.text
    assert np.array_equal(rebuilt.splits["train"].tokens, expected)


def _start_together(corpus: Path, cache_dir: Path, barrier, log: Path) -> None:
    """A process that records each cache it builds, then reads the corpus through the cache."""
    read_corpus = corpus_module.CorpusDataModule._read_corpus

    def counted(self):
        with log.open("a") as file:
            file.write("built\n")
        return read_corpus(self)

    corpus_module.CorpusDataModule._read_corpus = counted
    barrier.wait()
    _datamodule(corpus, cache_dir)


def test_processes_starting_together_build_the_cache_once(tmp_path) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl", documents=400)
    context = multiprocessing.get_context("fork")
    barrier, log = context.Barrier(3), tmp_path / "builds.log"
    processes = [
        context.Process(target=_start_together, args=(corpus, tmp_path / "cache", barrier, log))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert log.read_text().splitlines() == ["built"]
    assert len(_folders(tmp_path / "cache")) == 1


def test_a_full_disk_leaves_no_partial_cache_and_names_the_folder(tmp_path, monkeypatch) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl")

    def full(self, values):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(array_cache.ArrayWriter, "write", full)
    with pytest.raises(DataError, match=r"no space left .*tokens.*paths.cache_dir"):
        _datamodule(corpus, tmp_path / "cache")
    assert _folders(tmp_path / "cache") == []  # neither the cache nor its temporary folder


def test_ids_take_two_bytes_while_the_vocabulary_fits() -> None:
    assert token_dtype(8000) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(250_000) == np.uint32


def test_a_mapped_split_pickles_as_its_file_names(tmp_path) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl", documents=400)
    split = _datamodule(corpus, tmp_path / "cache").splits["train"]
    payload = pickle.dumps(split)
    assert len(payload) < 2000 < split.tokens.nbytes  # loader workers get names, not tokens
    copy = pickle.loads(payload)
    assert isinstance(copy.tokens, np.memmap) and np.array_equal(copy.tokens, split.tokens)


def test_lazy_blocks_are_the_stream_of_documents_and_separators() -> None:
    rng = np.random.default_rng(0)
    docs = [
        [rng.integers(5, 100, rng.integers(1, 9)).tolist() for _ in range(rng.integers(1, 5))]
        for _ in range(30)
    ]
    stream_ids = [t for doc in docs for t in [*[t for s in doc for t in s], 3]]
    stream = TokenStream(TokenizedSplit.from_documents(docs), separator=3)
    assert stream[:].tolist() == stream_ids
    assert stream[5:23].tolist() == stream_ids[5:23]
    blocks = Blocks(stream, 7)
    assert len(blocks) == (len(stream_ids) - 1) // 7
    for i in range(len(blocks)):
        inputs, targets = blocks[i]
        assert inputs.tolist() == stream_ids[7 * i : 7 * i + 7]
        assert targets.tolist() == stream_ids[7 * i + 1 : 7 * i + 8]


def test_a_restored_tokenizer_reuses_its_cache_and_another_gets_its_own(tmp_path) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    trained = _datamodule(corpus, tmp_path / "cache")
    restored = TextCorpusDataModule(
        source={"files": str(corpus)},
        sentences_column="sentences",
        tokenizer={"vocab": "wiki-wordpiece-8k"},
        block_size=16,
        cache_dir=str(tmp_path / "cache"),
    )
    restored.load_state_dict(trained.state_dict())  # as from a checkpoint
    restored.setup()
    assert restored.cache_folder == trained.cache_folder
    other = _datamodule(corpus, tmp_path / "cache", tokenizer={"vocab": "bert-base-uncased"})
    assert other.cache_folder != trained.cache_folder
    assert torch.equal(restored.blocks("train")[0][0], trained.blocks("train")[0][0])
