"""WordPiece tokenizers: the trained vocabulary is cached and reused, the vendored BERT vocabulary
is intact, truncation and lowercasing work, a missing vocabulary file is a clear error."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attnlab.data import tokenization
from attnlab.data.sources import load_splits
from attnlab.data.tokenization import SPECIAL_TOKENS, build_tokenizer
from attnlab.errors import DataError


@pytest.fixture(scope="module")
def tweets() -> list[str]:
    return load_splits(embedded="tweets.tsv.gz")["train"]["text"][:800]


def test_trained_vocab_is_cached_and_reused(
    tmp_path: Path, tweets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_tokenizer(tweets, tmp_path, vocab_size=500, min_frequency=2)
    cached = list((tmp_path / "tokenizers").glob("*.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert first.vocab()[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert first.vocab_size <= 500

    def no_training(*args, **kwargs):
        raise AssertionError("the second build trained again instead of reading the cache")

    monkeypatch.setattr(tokenization, "_train", no_training)
    second = build_tokenizer(tweets, tmp_path, vocab_size=500, min_frequency=2)
    assert second.vocab() == first.vocab()
    assert second.encode(tweets[:20]) == first.encode(tweets[:20])
    assert list((tmp_path / "tokenizers").glob("*.json")) == cached  # same file, untouched
    assert cached[0].stat().st_mtime_ns == stamp


def test_runs_that_start_together_share_one_trained_vocab(
    tmp_path: Path, tweets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DDP ranks or sweep jobs starting at once: one trains, the others wait and read its file
    (two trainings could differ: WordPiece training is not deterministic)."""
    trainings = []
    train = tokenization._train

    def counted(*args, **kwargs):
        trainings.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(tokenization, "_train", counted)
    with ThreadPoolExecutor(4) as pool:
        built = list(
            pool.map(lambda _: build_tokenizer(tweets, tmp_path, vocab_size=500), range(4))
        )
    assert len(trainings) == 1
    assert all(t.vocab() == built[0].vocab() for t in built)


def test_cache_key_depends_on_texts_and_settings(tmp_path: Path, tweets: list[str]) -> None:
    build_tokenizer(tweets, tmp_path, vocab_size=500)
    build_tokenizer(tweets, tmp_path, vocab_size=400)
    build_tokenizer(tweets[:-1], tmp_path, vocab_size=500)
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 3


def test_vendored_bert_vocab(tmp_path: Path) -> None:
    bert = build_tokenizer([], tmp_path, vocab="bert-base-uncased")
    assert bert.vocab_size == 30522
    ids = {t: bert.token_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    assert ids == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert bert.pad_id == 0
    assert bert.tokens(bert.encode(["Tokenization works"])[0]) == ["token", "##ization", "works"]
    assert not list(tmp_path.iterdir())  # nothing trained, nothing cached


def test_max_length_truncates(tmp_path: Path) -> None:
    text = ["one two three four five six seven eight nine ten"]
    bert = build_tokenizer([], tmp_path, vocab="bert-base-uncased", max_length=4)
    assert bert.tokens(bert.encode(text)[0]) == ["one", "two", "three", "four"]
    assert len(bert.encode(text, max_length=7)[0]) == 7  # per call
    unlimited = build_tokenizer([], tmp_path, vocab="bert-base-uncased", max_length=None)
    assert len(unlimited.encode(text)[0]) == 10


def test_lowercasing(tmp_path: Path, tweets: list[str]) -> None:
    lower = build_tokenizer([], tmp_path, vocab="bert-base-uncased", lowercase=True)
    assert lower.encode(["HeLLo WORLD"]) == lower.encode(["hello world"])
    assert lower.tokens(lower.encode(["HELLO"])[0]) == ["hello"]
    cased = build_tokenizer([], tmp_path, vocab="bert-base-uncased", lowercase=False)
    assert cased.encode(["HELLO"]) != cased.encode(["hello"])  # no uppercase in the vocab
    trained = build_tokenizer(tweets, tmp_path, vocab_size=500, lowercase=True)
    assert not any(t != t.lower() for t in trained.vocab() if t not in SPECIAL_TOKENS)


def test_vocab_file_not_found_names_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "vocab.txt"
    with pytest.raises(DataError) as error:
        build_tokenizer([], tmp_path, vocab=str(missing))
    message = str(error.value)
    assert "vocabulary file not found" in message and str(missing) in message
    assert "bert-base-uncased" in message and "tokenizer.vocab=null" in message


def test_own_vocab_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join([*SPECIAL_TOKENS, "good", "bad", "##ish"]) + "\n")
    tokenizer = build_tokenizer([], tmp_path, vocab=str(path))
    assert tokenizer.vocab_size == len(SPECIAL_TOKENS) + 3
    assert tokenizer.tokens(tokenizer.encode(["Goodish ugly"])[0]) == ["good", "##ish", "[UNK]"]


def test_empty_training_split_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty training split"):
        build_tokenizer([], tmp_path)
