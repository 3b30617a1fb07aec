"""ParallelCorpusDataModule: sources (embedded, Tatoeba .txt, jsonl, hub-style translation dicts),
seeded splits by example or by group, length filtering, separate tokenizers with BOS/EOS,
length-bucketed batches, checkpoint state, and clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

from attnlab.data import tab_separated
from attnlab.data.collate import texts_from_bytes
from attnlab.data.interface import join_pieces
from attnlab.data.parallel_corpus import ParallelCorpusDataModule
from attnlab.data.samplers import BucketBatchSampler
from attnlab.data.sources import EMBEDDED_DIR
from attnlab.data.tab_separated import read_tab_separated
from attnlab.data.translation_pairs import normal_form
from attnlab.errors import DataError

SMALL_TOKENIZER = {"vocab_size": 600, "min_frequency": 1, "max_length": 60}
EN = ["the cat sleeps", "a dog runs fast", "the bird sings a song", "my house is big", "we eat"]
FR = ["le chat dort", "un chien court vite", "l'oiseau chante", "ma maison est grande", "on mange"]


def _module(source: dict, tmp_path: Path, **kwargs) -> ParallelCorpusDataModule:
    options = {
        "source": source,
        "src_tokenizer": SMALL_TOKENIZER,
        "tgt_tokenizer": SMALL_TOKENIZER,
        "cache_dir": str(tmp_path / "cache"),
        "min_words": 1,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
    }
    return ParallelCorpusDataModule(**(options | kwargs))


def _tatoeba(path: Path, pairs: int = 40) -> Path:
    """A Tatoeba/Anki file: source<TAB>target<TAB>attribution, no header."""
    lines = [
        f"{EN[i % 5]} {i}\t{FR[i % 5]} {i}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}"
        for i in range(pairs)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def bible(tmp_path_factory: pytest.TempPathFactory) -> ParallelCorpusDataModule:
    """The embedded corpus with the default settings (3-30 English words, verse-level split)."""
    cache = tmp_path_factory.mktemp("bible_cache")
    datamodule = ParallelCorpusDataModule(
        {"embedded": "bible_en_fr.tsv.gz"},
        src_tokenizer={"vocab_size": 2000},
        tgt_tokenizer={"vocab_size": 2000},
        cache_dir=str(cache),
    )
    datamodule.setup("fit")
    return datamodule


def test_embedded_corpus_reads_every_verse_with_quotes_as_text() -> None:
    table = read_tab_separated(EMBEDDED_DIR / "bible_en_fr.tsv.gz")
    assert len(table) == 31102  # CSV quoting would merge the lines between two '"'
    assert table.column_names == ["book", "chapter", "verse", "en", "fr"]
    starts_with_quote = [t for t in table["en"] if t.startswith('"')]
    assert starts_with_quote and all("\t" not in t and "\n" not in t for t in starts_with_quote)


def _decoded_pairs(datamodule: ParallelCorpusDataModule, split: str) -> set[tuple[str, str]]:
    """A split's pairs read back from their ids (training pairs keep no text), normal form."""
    return {
        (
            join_pieces(datamodule.src_tokenizer.tokens(e["src_ids"])),
            datamodule.interface.decode_targets(torch.tensor([e["tgt_ids"]]))[0],
        )
        for e in datamodule.examples[split]
    }


def _held_out(datamodule: ParallelCorpusDataModule) -> dict[str, list[tuple[str, str]]]:
    """The evaluation splits' (source, reference) texts; training pairs keep none."""
    return {name: list(pairs.texts) for name, pairs in datamodule.examples.items() if pairs.texts}


def test_default_split_sizes_and_length_filter(bible: ParallelCorpusDataModule) -> None:
    """(The filter is one code path for every split: the held-out texts show it.)"""
    sizes = {name: len(pairs) for name, pairs in bible.examples.items()}
    assert sum(sizes.values()) == 22930  # the NOTICE's count of 3-30-word verses
    assert sizes["test"] == pytest.approx(0.1 * 22930, rel=0.05)
    # validation is carved from what the test split leaves (attnlab.data.sources.ensure_splits)
    assert sizes["validation"] == pytest.approx(0.05 * 0.9 * 22930, rel=0.05)
    for pairs in _held_out(bible).values():
        assert all(3 <= len(src.split()) <= 30 for src, _ in pairs)


def test_splits_are_seeded(tmp_path: Path) -> None:
    path = _tatoeba(tmp_path / "eng-fra.txt")
    first = _module({"files": str(path)}, tmp_path, seed=1)
    again = _module({"files": str(path)}, tmp_path, seed=1)
    other = _module({"files": str(path)}, tmp_path, seed=2)
    for datamodule in (first, again, other):
        datamodule.setup()
    assert _held_out(first) == _held_out(again)
    assert _decoded_pairs(first, "train") == _decoded_pairs(again, "train")
    assert _held_out(first)["test"] != _held_out(other)["test"]


def test_split_by_book_keeps_books_whole(bible: ParallelCorpusDataModule, tmp_path: Path) -> None:
    datamodule = ParallelCorpusDataModule(
        {"embedded": "bible_en_fr.tsv.gz"},
        split_by="book",
        src_tokenizer={"vocab": "bert-base-uncased"},
        tgt_tokenizer={"vocab": "bert-base-uncased"},
        cache_dir=str(tmp_path),
    )
    raw = datamodule._raw_splits()
    books = {name: set(split["book"]) for name, split in raw.items()}
    assert not books["train"] & books["test"] and not books["train"] & books["validation"]
    assert not books["validation"] & books["test"]
    assert sum(len(b) for b in books.values()) == 66
    total = sum(len(split) for split in raw.values())
    assert total == 31102
    assert len(raw["test"]) >= 0.1 * total and len(raw["validation"]) >= 0.05 * total


def test_word_limits_are_configurable(tmp_path: Path) -> None:
    path = _tatoeba(tmp_path / "eng-fra.txt")
    datamodule = _module({"files": str(path)}, tmp_path, min_words=4, max_words=4)
    datamodule.setup()
    for pairs in _held_out(datamodule).values():
        assert pairs and all(len(src.split()) == 4 for src, _ in pairs)


def test_tatoeba_txt_pairs_and_separate_tokenizers(tmp_path: Path) -> None:
    path = _tatoeba(tmp_path / "eng-fra.txt")
    datamodule = _module({"files": str(path)}, tmp_path)
    # the sizes are known before setup (for ${datamodule:...} in the model config)
    assert datamodule.src_vocab_size == datamodule.src_tokenizer.vocab_size
    assert datamodule.tgt_vocab_size == datamodule.tgt_tokenizer.vocab_size
    assert (datamodule.bos_id, datamodule.eos_id) == (
        datamodule.tgt_tokenizer.token_id("[CLS]"),
        datamodule.tgt_tokenizer.token_id("[SEP]"),
    )
    assert datamodule.src_pad_id == datamodule.tgt_pad_id == 0
    sources = set(datamodule.src_tokenizer.vocab())
    targets = set(datamodule.tgt_tokenizer.vocab())
    assert {"cat", "dog"} <= sources and not {"cat", "dog"} & targets
    assert {"chat", "chien"} <= targets and not {"chat", "chien"} & sources
    assert sum(len(split) for split in datamodule.examples.values()) == 40
    assert set(_held_out(datamodule)) == {"validation", "test"}  # training pairs keep no text
    train = datamodule.examples["train"]
    held_out = {pair for split in _held_out(datamodule).values() for pair in split}
    assert ("the cat sleeps 0", "le chat dort 0") in _decoded_pairs(datamodule, "train") | held_out
    assert "source" not in train[0]
    example = train[0]
    assert (
        example["tgt_ids"][0] == datamodule.bos_id and example["tgt_ids"][-1] == datamodule.eos_id
    )
    assert datamodule.eos_id not in example["tgt_ids"][1:-1]


def test_jsonl_with_configured_fields(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"english": EN[i % 5], "french": FR[i % 5], "id": i} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    datamodule = _module(
        {"files": str(path)}, tmp_path, source_column="english", target_column="french"
    )
    datamodule.setup()
    assert ("my house is big", "ma maison est grande") in _decoded_pairs(datamodule, "train")
    with pytest.raises(DataError, match=r"column 'en' \(data.source_column\) not found"):
        _module({"files": str(path)}, tmp_path).setup()


def _hub_like(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_hub`` answering with an opus_books-like table: a 'translation' dict column."""
    rows = [{"id": str(i), "translation": {"en": EN[i % 5], "fr": FR[i % 5]}} for i in range(30)]
    table = Dataset.from_list(rows)
    monkeypatch.setattr(
        "attnlab.data.sources.load_hub",
        lambda name, config=None, revision=None: DatasetDict(train=table),
    )


def test_hub_translation_dicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hub_like(monkeypatch)
    datamodule = _module({"hub": "opus_books", "hub_config": "en-fr"}, tmp_path)
    datamodule.setup()
    assert ("the cat sleeps", "le chat dort") in _decoded_pairs(datamodule, "train")
    reverse = _module({"hub": "opus_books"}, tmp_path, source_lang="fr", target_lang="en")
    reverse.setup()
    assert ("le chat dort", "the cat sleeps") in _decoded_pairs(reverse, "train")


def test_hub_without_the_language_pair_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hub_like(monkeypatch)
    datamodule = _module({"hub": "opus_books", "hub_config": "en-fr"}, tmp_path, target_lang="de")
    with pytest.raises(DataError, match=r"languages \['en', 'fr'\], not 'de'.*hub_config.*'en-fr'"):
        datamodule.setup()


def test_missing_side_empty_lines_and_empty_targets_fail_clearly(tmp_path: Path) -> None:
    path = tmp_path / "eng-fra.txt"
    path.write_text("hello there friend\tsalut mon ami\nonly a source side\n")
    with pytest.raises(DataError, match=r"line 2 of .*eng-fra.txt' has 1 tab-separated fields"):
        _module({"files": str(path)}, tmp_path).setup()
    path.write_text("hello there friend\tsalut mon ami\n\nbye now friend\tau revoir\n")
    with pytest.raises(DataError, match=r"line 2 of .*eng-fra.txt' is empty"):
        _module({"files": str(path)}, tmp_path).setup()
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("en\tfr\n" + "".join(f"{e}\t{f}\n" for e, f in zip(EN, FR, strict=True)))
    tsv.write_text(tsv.read_text() + "a lonely source here\t \n")
    with pytest.raises(DataError, match=r"has an empty target .*data.drop_empty=true"):
        _module({"files": str(tsv)}, tmp_path).setup()
    kept = _module({"files": str(tsv)}, tmp_path, drop_empty=True, val_fraction=0.4)
    kept.setup()
    assert sum(len(p) for p in kept.examples.values()) == 5


def test_bad_word_limits_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="max_words=2 is below data.min_words=3"):
        ParallelCorpusDataModule({"embedded": "bible_en_fr.tsv.gz"}, min_words=3, max_words=2)
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=f"data file not found: '{missing}'"):
        _module({"files": str(missing)}, tmp_path).setup()
    path = _tatoeba(tmp_path / "eng-fra.txt")
    with pytest.raises(DataError, match="no pairs of the 'train' split have 50-60 source words"):
        _module({"files": str(path)}, tmp_path, min_words=50, max_words=60).setup()


def test_bucket_sampler_groups_similar_lengths_and_covers_every_example() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (1000,), generator=generator).tolist()
    sampler = BucketBatchSampler(lengths, batch_size=32, shuffle=True, seed=0, pool_batches=10)
    first = list(sampler)
    assert len(first) == len(sampler) == 32
    assert sorted(i for batch in first for i in batch) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / 32
    assert spread < 10  # unsorted batches of 32 would span ~55
    assert list(sampler) == first  # the order is the epoch's
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new epoch, a new order
    assert list(BucketBatchSampler(lengths, 32, shuffle=True, seed=0, pool_batches=10)) == first
    ordered = [i for b in BucketBatchSampler(lengths, 32, shuffle=False) for i in b]
    assert [lengths[i] for i in ordered] == sorted(lengths)


def test_batches_pad_and_shift(bible: ParallelCorpusDataModule) -> None:
    batches = list(bible.train_dataloader())[:20]
    for batch in batches:
        assert batch["src_ids"].shape == batch["src_mask"].shape
        assert (batch["src_ids"][~batch["src_mask"]] == bible.src_pad_id).all()
        assert (batch["tgt_ids"][:, 0] == bible.bos_id).all()
        lengths = batch["tgt_mask"].sum(1)
        ends = batch["tgt_ids"].gather(1, (lengths - 1)[:, None]).squeeze(1)
        assert (ends == bible.eos_id).all()
        assert "source_text" not in batch  # training batches carry ids only
        # bucketing: little padding
        assert batch["tgt_mask"].float().mean() > 0.8
    (evaluation,) = list(bible.test_dataloader())[:1]
    sources = texts_from_bytes(evaluation["source_text"])
    assert len(sources) == len(texts_from_bytes(evaluation["reference_text"]))
    assert len(sources) == evaluation["src_ids"].size(0)


def test_decoding_and_references_share_one_normal_form(bible: ParallelCorpusDataModule) -> None:
    example = bible.examples["test"][0]
    raw = bible._raw_splits()["test"]
    text = next(t for s, t in zip(raw["en"], raw["fr"], strict=True) if s == example["source"])
    decoded = bible.interface.decode_targets(
        torch.tensor([example["tgt_ids"] + [bible.tgt_pad_id] * 3])
    )
    assert decoded == [example["reference"]] == [normal_form(bible.tgt_tokenizer, text)]
    assert join_pieces(["la", "lum", "##iere", "."]) == "la lumiere ."


def test_state_dict_restores_both_tokenizers(bible: ParallelCorpusDataModule) -> None:
    fresh = ParallelCorpusDataModule({"embedded": "bible_en_fr.tsv.gz"})
    fresh.load_state_dict(bible.state_dict())
    assert fresh.src_tokenizer.vocab() == bible.src_tokenizer.vocab()
    assert fresh.tgt_tokenizer.vocab() == bible.tgt_tokenizer.vocab()
    assert fresh.src_vocab_size == bible.src_vocab_size  # no data loaded for this
    assert not fresh.examples
    assert torch.equal(
        fresh.interface.encode_sources(["In the beginning"])["src_ids"],
        bible.interface.encode_sources(["In the beginning"])["src_ids"],
    )


def test_gzipped_tatoeba(tmp_path: Path) -> None:
    plain = _tatoeba(tmp_path / "eng-fra.txt")
    packed = tmp_path / "eng-fra.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert (
        read_tab_separated(packed, ["en", "fr"])["fr"]
        == read_tab_separated(plain, ["en", "fr"])["fr"]
    )
    assert tab_separated.suffix(packed) == ".txt"
