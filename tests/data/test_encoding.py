"""Tokenizing on worker processes gives the ids the tokenizer gives, in order."""

from __future__ import annotations

import numpy as np
import pytest

from attnlab.data import encoding
from attnlab.data.encoding import BatchEncoder
from attnlab.data.tokenization import build_tokenizer

SENTENCES = [f"sentence {i} has {'many ' * (i % 7)}words and number {i * 37}" for i in range(300)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer([], tmp_path_factory.mktemp("tok"), vocab="wiki-wordpiece-8k").tokenizer


@pytest.mark.parametrize("processes", [1, 2])
def test_batches_come_back_in_order_with_the_tokenizers_ids(tokenizer, processes, monkeypatch):
    monkeypatch.setattr(encoding, "CHUNK_TEXTS", 7)  # items split over chunks and workers
    items = [SENTENCES[25 * i : 25 * i + n] for i, n in enumerate([30, 0, 1, 29] * 3)]
    with BatchEncoder(tokenizer, np.dtype(np.uint16), processes) as encoder:
        results = list(encoder.map(items, list))
    assert [item for item, _, _ in results] == items
    for texts, ids, lengths in results:
        expected = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
        assert ids.dtype == np.uint16 and lengths.dtype == np.int64
        assert lengths.tolist() == [len(e) for e in expected]
        assert ids.tolist() == [i for e in expected for i in e]


def test_a_worker_that_dies_stops_the_build_with_a_clear_error(tokenizer, monkeypatch):
    monkeypatch.setattr(encoding, "encode_ids", lambda *args: __import__("os")._exit(1))
    encoder = BatchEncoder(tokenizer, np.dtype(np.uint16), 2)
    with encoder, pytest.raises(encoding.DataError, match="worker process died"):
        list(encoder.map([SENTENCES], list))
