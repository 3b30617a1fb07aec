"""The pair cache: a parallel corpus tokenized once into memory-mapped packed arrays, reused by
every later run without reading the corpus, rebuilt when the source changes or is damaged."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np

from attnlab.data import array_cache
from attnlab.data.packed import PackedBuilder, PackedSequences, PackedTexts
from attnlab.data.parallel_corpus import ParallelCorpusDataModule

TOKENIZER = {"vocab_size": 600, "min_frequency": 1, "max_length": 60}


def _corpus(path: Path, pairs: int = 60) -> Path:
    lines = [f"the cat number {i} sleeps\tle chat numéro {i} dort «{i}»" for i in range(pairs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _module(path: Path, cache: Path) -> ParallelCorpusDataModule:
    datamodule = ParallelCorpusDataModule(
        {"files": str(path)},
        src_tokenizer=TOKENIZER,
        tgt_tokenizer=TOKENIZER,
        min_words=1,
        cache_dir=str(cache),
        val_fraction=0.2,
        test_fraction=0.2,
    )
    datamodule.setup()
    return datamodule


def _folders(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "pairs").iterdir() if p.is_dir())


def _pairs(datamodule: ParallelCorpusDataModule) -> dict[str, list]:
    return {name: list(examples) for name, examples in datamodule.examples.items()}


def test_a_second_run_maps_the_cache_without_reading_the_corpus(tmp_path, monkeypatch) -> None:
    corpus = _corpus(tmp_path / "eng-fra.txt")
    first = _module(corpus, tmp_path / "cache")

    def unread(self):
        raise AssertionError("the corpus was read although its cache exists")

    monkeypatch.setattr(ParallelCorpusDataModule, "_raw_splits", unread)
    again = _module(corpus, tmp_path / "cache")
    assert _pairs(again) == _pairs(first)
    assert again.tgt_tokenizer.to_str() == first.tgt_tokenizer.to_str()
    train = again.examples["train"]
    assert isinstance(train.sources.tokens, np.memmap) and train.sources.tokens.dtype == np.uint16
    assert train.texts is None  # training pairs keep no text
    source, reference = again.examples["test"].texts[0]
    assert source.startswith("the cat number") and "numero" in reference  # normal form
    assert len(_folders(tmp_path / "cache")) == 1


def test_a_changed_corpus_gets_a_new_cache(tmp_path) -> None:
    corpus = _corpus(tmp_path / "eng-fra.txt")
    before = len(_module(corpus, tmp_path / "cache").examples["train"])
    _corpus(corpus, pairs=90)
    after = len(_module(corpus, tmp_path / "cache").examples["train"])
    assert after > before
    assert len(_folders(tmp_path / "cache")) == 2


def test_a_damaged_pair_cache_is_rebuilt_with_a_warning(tmp_path, caplog) -> None:
    corpus = _corpus(tmp_path / "eng-fra.txt")
    expected = _pairs(_module(corpus, tmp_path / "cache"))
    (folder,) = _folders(tmp_path / "cache")
    tokens = folder / "train.tgt.tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-2])
    with caplog.at_level(logging.WARNING, logger=array_cache.__name__):
        rebuilt = _module(corpus, tmp_path / "cache")
    assert "rebuilding" in caplog.text and "train.tgt.tokens.bin" in caplog.text
    assert _pairs(rebuilt) == expected


def test_restored_tokenizers_reuse_the_cache_built_with_them(tmp_path, monkeypatch) -> None:
    corpus = _corpus(tmp_path / "eng-fra.txt")
    trained = _module(corpus, tmp_path / "cache")
    restored = ParallelCorpusDataModule(
        {"files": str(corpus)},
        src_tokenizer=TOKENIZER,
        tgt_tokenizer=TOKENIZER,
        min_words=1,
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.2,
        test_fraction=0.2,
    )
    restored.load_state_dict(trained.state_dict())
    restored.setup()
    assert _pairs(restored) == _pairs(trained)
    assert len(_folders(tmp_path / "cache")) == 1


def test_packed_texts_round_trip_any_unicode_and_pickle_as_file_names(tmp_path) -> None:
    texts = ["", "plain", "accents: é à ç", "emoji 🐈 and «quotes»"]
    writer = array_cache.CacheWriter(tmp_path)
    builder = PackedBuilder.into(writer, "texts", np.uint8)
    builder.add_texts(texts[:2])
    builder.add_texts(texts[2:])
    writer.files()
    arrays = {
        name: np.memmap(tmp_path / f"{name}.bin", dtype=dtype, mode="r")
        for name, dtype in (("texts.tokens", np.uint8), ("texts.offsets", np.int64))
    }
    packed = PackedSequences.from_cache(arrays, "texts")
    assert list(PackedTexts(packed)) == texts
    data = pickle.dumps(packed)
    assert len(data) < 1000 and str(tmp_path) in str(pickle.loads(data).tokens.filename)
    assert list(PackedTexts(pickle.loads(data))) == texts


def test_two_loader_workers_serve_every_mapped_pair_once(tmp_path) -> None:
    corpus = _corpus(tmp_path / "eng-fra.txt")
    datamodule = _module(corpus, tmp_path / "cache")
    datamodule.num_workers = 2
    served = sum(len(batch["src_ids"]) for batch in datamodule.train_dataloader())
    assert served == len(datamodule.examples["train"])
