"""Positional encodings: attention is order-blind, so each position adds its own vector.

``sinusoidal_table`` is the fixed encoding of Vaswani et al. (2017); ``LearnedPositionalEncoding``
is one trained vector per position (BERT, GPT-2). Both map ``x (B, T, D)`` to ``x + pe[:T]`` and
raise a ValueError, not an index error deep in torch, when T exceeds the table.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

POSITIONAL_KINDS = ("sinusoidal", "learned")


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(max_len, d_model) with PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(same).

    Each pair of dims is a rotation at its own frequency, so PE[pos + k] is a linear function of
    PE[pos]. Computed in float64, returned in the default dtype.
    """
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / base ** (two_i / d_model)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = angle.sin()
    table[:, 1::2] = angle[:, : d_model // 2].cos()  # an odd d_model ends on a sine
    return table.to(torch.get_default_dtype())


def _check_length(length: int, max_len: int) -> None:
    if length > max_len:
        raise ValueError(
            f"sequence length {length} is longer than the positional table (max_len={max_len}); "
            f"build the model with max_len >= {length} or crop the input"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[:T] with the fixed sinusoidal table (a buffer: not trained, not saved)."""

    def __init__(self, d_model: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_table(max_len, d_model, base), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> x + PE[:T]."""
        _check_length(x.size(1), self.max_len)
        return x + self.pe[: x.size(1)].to(x.dtype)


class LearnedPositionalEncoding(nn.Module):
    """x + P[:T] with P a trained (max_len, D) table.

    Named ``position_embeddings`` like BERT's ``embeddings.position_embeddings``; initialised
    N(0, 0.02) as in BERT and GPT-2.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.position_embeddings = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.position_embeddings.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> x + P[:T]."""
        _check_length(x.size(1), self.max_len)
        return x + self.position_embeddings.weight[: x.size(1)]


def build_positional(kind: str, d_model: int, max_len: int, base: float = 10000.0) -> nn.Module:
    """The positional encoding called ``kind`` (one of ``POSITIONAL_KINDS``)."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len, base)
    if kind == "learned":
        return LearnedPositionalEncoding(d_model, max_len)
    raise ValueError(f"unknown positional encoding '{kind}'; choose one of {POSITIONAL_KINDS}")
