"""linear_cross_entropy: the loss and gradients of F.cross_entropy on the full logits, in chunks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.models.lm import TransformerLM
from attnlab.models.losses import linear_cross_entropy


def _inputs(n: int = 70, d: int = 16, v: int = 50, dtype: torch.dtype = torch.float64):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=generator, dtype=dtype, requires_grad=True)
    weight = torch.randn(v, d, generator=generator, dtype=dtype, requires_grad=True)
    labels = torch.randint(v, (n,), generator=generator)
    labels[::7] = -100  # ignored positions
    return hidden, weight, labels


@pytest.mark.parametrize("chunk_rows", [1, 16, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_loss_and_gradients_equal_cross_entropy_on_the_full_logits(
    chunk_rows: int, with_bias: bool, label_smoothing: float
) -> None:
    hidden, weight, labels = _inputs()
    bias = (
        torch.randn(weight.size(0), dtype=weight.dtype, requires_grad=True) if with_bias else None
    )
    inputs = (hidden, weight) if bias is None else (hidden, weight, bias)
    expected = F.cross_entropy(
        F.linear(hidden, weight, bias), labels, ignore_index=-100, label_smoothing=label_smoothing
    )
    expected_grads = torch.autograd.grad(expected * 3.0, inputs)
    loss, nll = linear_cross_entropy(
        hidden, weight, labels, bias=bias, label_smoothing=label_smoothing, chunk_rows=chunk_rows
    )
    grads = torch.autograd.grad(loss * 3.0, inputs)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    expected_nll = F.cross_entropy(F.linear(hidden, weight, bias), labels, ignore_index=-100)
    torch.testing.assert_close(nll, expected_nll.detach(), rtol=0, atol=1e-12)
    assert not nll.requires_grad
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_under_bf16_autocast_it_matches_cross_entropy_on_autocast_logits() -> None:
    hidden, weight, labels = _inputs(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy((hidden @ weight.T).float(), labels)
        loss, _ = linear_cross_entropy(hidden, weight, labels, chunk_rows=32)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)
    loss.backward()
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32


def test_without_grad_it_only_computes_the_loss() -> None:
    hidden, weight, labels = _inputs()
    with torch.no_grad():
        loss, _ = linear_cross_entropy(hidden, weight, labels, chunk_rows=8)
    expected = F.cross_entropy(hidden @ weight.T, labels)
    torch.testing.assert_close(loss, expected.detach(), rtol=0, atol=1e-12)


def test_the_transformer_lm_loss_from_labels_equals_the_loss_on_its_logits() -> None:
    torch.manual_seed(0)
    model = TransformerLM(60, d_model=16, num_heads=2, num_layers=1, d_ff=32, max_len=12,
                          dropout=0.0).double()  # fmt: skip
    ids = torch.randint(60, (3, 12))
    labels = F.pad(ids[:, 1:], (0, 1), value=-100)
    expected = F.cross_entropy(model(ids).flatten(0, 1), labels.flatten(), ignore_index=-100)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    loss = model(ids, labels=labels)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
