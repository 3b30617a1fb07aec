"""Attention pooling: weights are a distribution over real tokens, blind to padding, for every
score function and for mean pooling; bad score settings fail clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.models.attention import (
    SCORE_FUNCTIONS,
    AttentionPooling,
    MeanPooling,
    build_score,
    masked_softmax,
)
from attnlab.models.classifier import AttentionPoolingClassifier

DIM = 16
POOLINGS = [*SCORE_FUNCTIONS, "mean"]


def _pooling(name: str) -> nn.Module:
    torch.manual_seed(0)
    return (MeanPooling() if name == "mean" else AttentionPooling(DIM, score=name)).eval()


def _mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("name", POOLINGS)
def test_weights_sum_to_one_and_are_zero_on_padding(name: str) -> None:
    pooling = _pooling(name)
    lengths = [7, 3, 1, 5]
    x = torch.randn(len(lengths), 7, DIM) * 3
    mask = _mask(lengths, 7)
    pooled, weights = pooling(x, mask)
    assert pooled.shape == (4, DIM) and weights.shape == (4, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    assert (weights[~mask] == 0).all()  # exactly zero, not just small
    assert (weights[mask] > 0).all()
    torch.testing.assert_close(pooled, (weights.unsqueeze(-1) * x).sum(1))


@pytest.mark.parametrize("name", POOLINGS)
def test_invariant_to_padding_length(name: str) -> None:
    pooling = _pooling(name)
    real = torch.randn(1, 4, DIM)
    outputs = []
    for width in (5, 12):
        garbage = torch.randn(1, width - 4, DIM) * 100  # whatever sits in the padding
        x = torch.cat([real, garbage], dim=1)
        outputs.append(pooling(x, _mask([4], width)))
    (pooled_5, weights_5), (pooled_12, weights_12) = outputs
    torch.testing.assert_close(weights_5[:, :4], weights_12[:, :4], atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled_5, pooled_12, atol=1e-6, rtol=0)
    assert (weights_12[:, 4:] == 0).all()


@pytest.mark.parametrize("pooling", ["attention", "mean"])
@pytest.mark.parametrize("score", SCORE_FUNCTIONS)
def test_classifier_logits_ignore_padding(pooling: str, score: str) -> None:
    torch.manual_seed(0)
    model = AttentionPoolingClassifier(50, 3, embed_dim=DIM, pooling=pooling, score=score).eval()
    ids = torch.tensor([[5, 17, 3, 42]])
    short = torch.cat([ids, torch.zeros(1, 1, dtype=torch.long)], dim=1)
    long = torch.cat([ids, torch.zeros(1, 8, dtype=torch.long)], dim=1)
    logits_5, weights_5 = model(short, _mask([4], 5))
    logits_12, weights_12 = model(long, _mask([4], 12))
    torch.testing.assert_close(logits_5, logits_12, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights_5[:, :4], weights_12[:, :4], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", POOLINGS)
def test_row_without_real_tokens_gives_zeros_not_nan(name: str) -> None:
    pooling = _pooling(name).train()
    x = torch.randn(2, 6, DIM, requires_grad=True)
    mask = _mask([4, 0], 6)
    pooled, weights = pooling(x, mask)
    assert torch.isfinite(pooled).all() and torch.isfinite(weights).all()
    assert (weights[1] == 0).all() and (pooled[1] == 0).all()
    (pooled.sum() + weights.sum()).backward()
    assert torch.isfinite(x.grad).all()
    for parameter in pooling.parameters():
        assert torch.isfinite(parameter.grad).all()


def test_masked_softmax_without_mask_is_softmax() -> None:
    scores = torch.randn(3, 5)
    torch.testing.assert_close(masked_softmax(scores, None), scores.softmax(-1))
    all_real = torch.ones(3, 5, dtype=torch.bool)
    torch.testing.assert_close(masked_softmax(scores, all_real), scores.softmax(-1))


@pytest.mark.parametrize("name", SCORE_FUNCTIONS)
def test_scores_have_shape_batch_queries_keys(name: str) -> None:
    score = build_score(name, DIM, DIM)
    assert score(torch.randn(2, 3, DIM), torch.randn(2, 5, DIM)).shape == (2, 3, 5)


@pytest.mark.parametrize("name", ["bilinear", "mlp"])
def test_bilinear_and_mlp_accept_different_sizes(name: str) -> None:
    score = build_score(name, 8, 12, hidden_dim=10)
    assert score(torch.randn(2, 1, 8), torch.randn(2, 4, 12)).shape == (2, 1, 4)


@pytest.mark.parametrize("name", ["dot", "cosine"])
def test_dot_and_cosine_refuse_mismatched_sizes(name: str) -> None:
    with pytest.raises(ValueError) as error:
        build_score(name, 8, 12)
    message = str(error.value)
    assert name in message and "8" in message and "12" in message
    assert "bilinear" in message and "mlp" in message  # the fix


def test_unknown_score_lists_the_valid_ones() -> None:
    for build in (
        lambda: build_score("general", DIM, DIM),
        lambda: AttentionPooling(DIM, score="general"),
        lambda: AttentionPoolingClassifier(10, 2, embed_dim=DIM, score="general"),
    ):
        with pytest.raises(ValueError) as error:
            build()
        message = str(error.value)
        assert "general" in message
        assert all(name in message for name in SCORE_FUNCTIONS)


def test_unknown_pooling_names_the_options() -> None:
    with pytest.raises(ValueError, match=r"model\.pooling='max'.*'attention' or 'mean'"):
        AttentionPoolingClassifier(10, 2, pooling="max")
