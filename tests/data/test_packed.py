"""Packed token sequences: the same lists back, a few bytes a token."""

from __future__ import annotations

import numpy as np
import pytest

from attnlab.data.packed import PackedSequences

BATCHES = [[[5, 6, 7], [], [8]], [[70_000, 1]], []]  # an empty sequence, an empty batch


def test_packed_sequences_give_back_each_list() -> None:
    packed = PackedSequences.pack(BATCHES, vocab_size=70_001)
    flat = [seq for batch in BATCHES for seq in batch]
    assert len(packed) == len(flat) and list(packed) == flat and packed[-1] == [70_000, 1]
    assert packed.lengths.tolist() == [3, 0, 1, 2]
    assert packed.tokens.dtype == np.uint32  # 70,000 ids do not fit uint16
    with pytest.raises(IndexError):
        packed[len(flat)]


def test_a_small_vocabulary_packs_two_bytes_a_token() -> None:
    sequences = [list(range(i % 50, i % 50 + 20)) for i in range(1000)]
    packed = PackedSequences.pack([sequences[:600], sequences[600:]], vocab_size=8000)
    assert packed.tokens.dtype == np.uint16 and packed[999] == sequences[999]
    assert packed.nbytes == 2 * 20_000 + 8 * 1001
    assert PackedSequences.pack([], vocab_size=10).lengths.tolist() == []
