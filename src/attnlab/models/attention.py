"""Attention, written out: score functions, masked softmax and attention pooling.

One score module serves every place the project compares a query with keys: the learned query of
attention pooling (tweet classifier), the decoder state s_{m-1} against encoder states h_i (RNN
cross-attention), and the plots. A score maps ``query (B, Q, Dq)`` and ``keys (B, K, Dk)`` to
``scores (B, Q, K)``; ``masked_softmax`` turns them into weights that are exactly 0 on padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCORE_FUNCTIONS = ("dot", "cosine", "bilinear", "mlp")


def _check_same_dim(name: str, query_dim: int, key_dim: int) -> None:
    if query_dim != key_dim:
        raise ValueError(
            f"score '{name}' compares query and key directly, so their sizes must match "
            f"(query {query_dim} != key {key_dim}); use score 'bilinear' or 'mlp' instead"
        )


class Score(nn.Module):
    """A score function, in two parts: ``prepare(keys)`` is what depends on the keys alone
    (projected or normalised once per sentence, however many queries meet them: a decoder's
    steps), ``compare(query, prepared)`` the rest. ``score(query, keys)`` does both."""

    def prepare(self, keys: Tensor) -> Tensor:
        return keys

    def compare(self, query: Tensor, prepared: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        return self.compare(query, self.prepare(keys))


class DotScore(Score):
    """s = q . k (Luong 'dot')."""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        _check_same_dim("dot", query_dim, key_dim)

    def compare(self, query: Tensor, prepared: Tensor) -> Tensor:
        return query @ prepared.transpose(-2, -1)


class CosineScore(Score):
    """s = scale * cos(q, k); cosines live in [-1, 1], so a learned scale lets softmax get sharp."""

    def __init__(self, query_dim: int, key_dim: int, init_scale: float = 10.0) -> None:
        super().__init__()
        _check_same_dim("cosine", query_dim, key_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def prepare(self, keys: Tensor) -> Tensor:
        return F.normalize(keys, dim=-1)

    def compare(self, query: Tensor, prepared: Tensor) -> Tensor:
        return self.log_scale.exp() * (F.normalize(query, dim=-1) @ prepared.transpose(-2, -1))


class BilinearScore(Score):
    """s = q^T W k (Luong 'general'); query and key may differ in size."""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.weight = nn.Linear(key_dim, query_dim, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.weight(keys)

    def compare(self, query: Tensor, prepared: Tensor) -> Tensor:
        return query @ prepared.transpose(-2, -1)


class MLPScore(Score):
    """s = v^T tanh(W [q ; k]) (Bahdanau 'additive'): the seed's FC(s_{m-1} || h_i).

    W [q ; k] is computed as W_q q + W_k k so the concatenation is never materialised for every
    (query, key) pair, and W_k k is prepared once for all the queries.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or key_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=True)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)

    def compare(self, query: Tensor, prepared: Tensor) -> Tensor:
        hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + prepared.unsqueeze(1))
        return self.v(hidden).squeeze(-1)


def build_score(name: str, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> Score:
    """The score function called ``name`` (one of ``SCORE_FUNCTIONS``)."""
    if name == "dot":
        return DotScore(query_dim, key_dim)
    if name == "cosine":
        return CosineScore(query_dim, key_dim)
    if name == "bilinear":
        return BilinearScore(query_dim, key_dim)
    if name == "mlp":
        return MLPScore(query_dim, key_dim, hidden_dim)
    raise ValueError(f"unknown score function '{name}'; choose one of {', '.join(SCORE_FUNCTIONS)}")


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over real positions only: masked (False) positions get weight exactly 0.

    A row with no real position gives all zeros instead of NaN.
    """
    if mask is None:
        return scores.softmax(dim)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(dim) * mask


class AttentionPooling(nn.Module):
    """e = sum_i alpha_i e_i with alpha = softmax_i(score(q, e_i)) and q a learned query vector."""

    def __init__(self, dim: int, score: str = "mlp", hidden_dim: int | None = None) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.score = build_score(score, dim, dim, hidden_dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D), mask (B, T) True on real tokens -> pooled (B, D), weights (B, T)."""
        query = self.query.expand(x.size(0), 1, -1)
        weights = masked_softmax(self.score(query, x).squeeze(1), mask)
        return (weights.unsqueeze(1) @ x).squeeze(1), weights


class MeanPooling(nn.Module):
    """The baseline the seed argues against: every real token weighs the same."""

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        weights = mask.to(x.dtype) / mask.sum(-1, keepdim=True).clamp(min=1)
        return (weights.unsqueeze(1) @ x).squeeze(1), weights
