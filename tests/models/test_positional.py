"""Positional encodings: the sinusoidal formula, the learned table, and the length check."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.models.positional import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    build_positional,
    sinusoidal_table,
)


def _formula(max_len: int, d_model: int, base: float) -> torch.Tensor:
    """The table written out element by element with math.sin / math.cos."""
    rows = []
    for pos in range(max_len):
        row = []
        for dim in range(d_model):
            two_i = dim - dim % 2
            angle = pos / base ** (two_i / d_model)
            row.append(math.sin(angle) if dim % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(("max_len", "d_model", "base"), [(50, 16, 10000.0), (12, 7, 10000.0)])
def test_table_matches_formula(max_len: int, d_model: int, base: float) -> None:
    table = sinusoidal_table(max_len, d_model, base)
    assert table.shape == (max_len, d_model)
    assert table.dtype == torch.get_default_dtype()
    torch.testing.assert_close(table.double(), _formula(max_len, d_model, base), rtol=0, atol=1e-6)


def test_seed_example_d4_base100() -> None:
    """d_model=4, base=100: PE[pos] = [sin pos, cos pos, sin(pos/10), cos(pos/10)]."""
    table = sinusoidal_table(6, 4, base=100.0).double()
    torch.testing.assert_close(table, _formula(6, 4, 100.0), rtol=0, atol=1e-6)
    expected_pos_2 = torch.tensor(
        [math.sin(2), math.cos(2), math.sin(0.2), math.cos(0.2)], dtype=torch.float64
    )
    torch.testing.assert_close(table[2], expected_pos_2, rtol=0, atol=1e-6)
    seed_pos_1 = torch.tensor([0.841471, 0.540302, 0.099833, 0.995004], dtype=torch.float64)
    torch.testing.assert_close(table[1], seed_pos_1, rtol=0, atol=1e-6)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))


def test_sinusoidal_module_adds_the_table() -> None:
    encoding = SinusoidalPositionalEncoding(8, max_len=20, base=100.0)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(encoding(x), x + sinusoidal_table(20, 8, 100.0)[:5])
    assert "pe" not in encoding.state_dict()  # fixed: rebuilt, not saved
    assert list(encoding.parameters()) == []


def test_learned_module_shape_and_name() -> None:
    encoding = LearnedPositionalEncoding(8, max_len=20)
    assert encoding.position_embeddings.weight.shape == (20, 8)
    assert encoding.position_embeddings.weight.requires_grad
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(encoding(x), x + encoding.position_embeddings.weight[:5])


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_too_long_is_a_clear_error(kind: str) -> None:
    encoding = build_positional(kind, d_model=8, max_len=10)
    encoding(torch.randn(1, 10, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match=r"length 11 .*max_len=10"):
        encoding(torch.randn(1, 11, 8))


def test_build_positional() -> None:
    assert isinstance(build_positional("learned", 8, 10), LearnedPositionalEncoding)
    assert isinstance(build_positional("sinusoidal", 8, 10, 100.0), SinusoidalPositionalEncoding)
    with pytest.raises(ValueError, match="rotary"):
        build_positional("rotary", 8, 10)
