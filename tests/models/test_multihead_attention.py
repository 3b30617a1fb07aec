"""MultiHeadAttention against torch.nn.MultiheadAttention, and the properties masks promise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.models.multi_head import MultiHeadAttention

D_MODEL, HEADS, BATCH, LENGTH = 16, 4, 3, 7


def _pair(bias: bool = True) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(D_MODEL, HEADS, bias=bias, batch_first=True).double().eval()
    ours = MultiHeadAttention(D_MODEL, HEADS, bias=bias).double().eval()
    ours.load_torch_mha(reference)
    return ours, reference


def _padding_mask() -> torch.Tensor:
    """(B, T) True on real tokens; lengths 7, 4, 1."""
    lengths = torch.tensor([LENGTH, 4, 1])
    return torch.arange(LENGTH)[None, :] < lengths[:, None]


def _causal_torch_mask(length: int) -> torch.Tensor:
    """torch's convention: True where attention is NOT allowed."""
    return torch.ones(length, length, dtype=torch.bool).triu(1)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_self_attention(bias: bool, padded: bool, causal: bool) -> None:
    ours, reference = _pair(bias)
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    mask = _padding_mask() if padded else None
    out, weights = ours(x, mask=mask, causal=causal)
    expected, expected_weights = reference(
        x,
        x,
        x,
        key_padding_mask=None if mask is None else ~mask,
        attn_mask=_causal_torch_mask(LENGTH) if causal else None,
        need_weights=True,
    )
    assert weights.shape == (BATCH, HEADS, LENGTH, LENGTH)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(weights.mean(1), expected_weights, rtol=0, atol=1e-5)


def test_matches_torch_cross_attention() -> None:
    ours, reference = _pair()
    query = torch.randn(BATCH, 3, D_MODEL, dtype=torch.float64)
    key = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    value = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    mask = _padding_mask()
    out, weights = ours(query, key, value, mask=mask)
    expected, expected_weights = reference(query, key, value, key_padding_mask=~mask)
    assert out.shape == (BATCH, 3, D_MODEL)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(weights.mean(1), expected_weights, rtol=0, atol=1e-5)


def test_padding_gets_exactly_zero_weight() -> None:
    ours, _ = _pair()
    mask = _padding_mask()
    _, weights = ours(torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64), mask=mask)
    assert torch.all(weights.masked_select(~mask[:, None, None, :]) == 0)
    torch.testing.assert_close(
        weights.sum(-1), torch.ones(BATCH, HEADS, LENGTH, dtype=torch.float64)
    )


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_math_and_sdpa_agree(padded: bool, causal: bool) -> None:
    math_attention, _ = _pair()
    sdpa_attention = MultiHeadAttention(D_MODEL, HEADS, impl="sdpa").double().eval()
    sdpa_attention.load_state_dict(math_attention.state_dict())
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    mask = _padding_mask() if padded else None
    expected, _ = math_attention(x, mask=mask, causal=causal)
    out, weights = sdpa_attention(x, mask=mask, causal=causal)
    assert weights is None
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    out_with_weights, weights = sdpa_attention(x, mask=mask, causal=causal, need_weights=True)
    assert weights.shape == (BATCH, HEADS, LENGTH, LENGTH)
    torch.testing.assert_close(out_with_weights, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_padding_never_changes_real_positions(impl: str) -> None:
    ours = MultiHeadAttention(D_MODEL, HEADS, impl=impl).double().eval()
    mask = _padding_mask()
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    noisy = torch.where(mask[..., None], x, 100 * torch.randn_like(x))
    out, _ = ours(x, mask=mask)
    out_noisy, _ = ours(noisy, mask=mask)
    real = mask[..., None].expand_as(out)
    torch.testing.assert_close(out[real], out_noisy[real], rtol=0, atol=1e-12)
    assert not torch.allclose(out[~real], out_noisy[~real])  # the test can see a change


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_query_with_no_real_key_attends_to_nothing(impl: str) -> None:
    """Left padding + causal: the first queries see only padding, and get zero attention output."""
    ours = MultiHeadAttention(D_MODEL, HEADS, impl=impl).double().eval()
    mask = torch.arange(LENGTH)[None, :] >= torch.tensor([0, 3, 6])[:, None]
    out, _ = ours(torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64), mask=mask, causal=True)
    assert not out.isnan().any()
    no_key = ~mask  # with left padding, query t has a real key <= t iff t itself is real
    torch.testing.assert_close(out[no_key], ours.output.bias.expand_as(out[no_key]))
    assert not torch.allclose(out[mask], ours.output.bias.expand_as(out[mask]))


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_causal_output_ignores_the_future(impl: str) -> None:
    ours = MultiHeadAttention(D_MODEL, HEADS, impl=impl).double().eval()
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    out, _ = ours(x, causal=True)
    for t in range(LENGTH - 1):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
        out_changed, _ = ours(changed, causal=True)
        torch.testing.assert_close(out_changed[:, : t + 1], out[:, : t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(out_changed[:, t + 1 :], out[:, t + 1 :])


def test_dropout_only_in_training() -> None:
    ours = MultiHeadAttention(D_MODEL, HEADS, dropout=0.5)
    x = torch.randn(BATCH, LENGTH, D_MODEL)
    ours.eval()
    torch.testing.assert_close(ours(x)[0], ours(x)[0])
    ours.train()
    assert not torch.allclose(ours(x)[0], ours(x)[0])


def test_heads_must_divide_d_model() -> None:
    with pytest.raises(ValueError, match=r"d_model \(10\).*num_heads \(4\)"):
        MultiHeadAttention(10, 4)


def test_query_key_dim_mismatch_is_a_clear_error() -> None:
    ours = MultiHeadAttention(D_MODEL, HEADS)
    with pytest.raises(ValueError, match="key must be"):
        ours(torch.randn(2, 3, D_MODEL), torch.randn(2, 5, D_MODEL + 1))


def test_mask_shape_is_checked() -> None:
    ours = MultiHeadAttention(D_MODEL, HEADS)
    with pytest.raises(ValueError, match="mask must be"):
        ours(torch.randn(2, 3, D_MODEL), mask=torch.ones(2, 4, dtype=torch.bool))


def test_unknown_impl() -> None:
    with pytest.raises(ValueError, match="impl"):
        MultiHeadAttention(D_MODEL, HEADS, impl="flash")


def test_load_rejects_other_sizes() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(D_MODEL, 2).load_torch_mha(nn.MultiheadAttention(D_MODEL, HEADS))
