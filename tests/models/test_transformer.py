"""EncoderLayer and Encoder against torch.nn.TransformerEncoderLayer, post-norm and pre-norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.models.transformer import Encoder, EncoderConfig, EncoderLayer

D_MODEL, HEADS, D_FF, BATCH, LENGTH = 16, 4, 32, 3, 6


def _padding_mask() -> torch.Tensor:
    """(B, T) True on real tokens; lengths 6, 3, 1."""
    return torch.arange(LENGTH)[None, :] < torch.tensor([LENGTH, 3, 1])[:, None]


def _torch_layer(norm_first: bool, activation: str) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        D_MODEL, HEADS, D_FF, activation=activation, batch_first=True, norm_first=norm_first
    )


def _randomise_norms(module: nn.Module) -> None:
    """LayerNorm starts at weight 1, bias 0: random values make the copy of the norms count."""
    for norm in module.modules():
        if isinstance(norm, nn.LayerNorm):
            nn.init.normal_(norm.weight)
            nn.init.normal_(norm.bias)


@pytest.mark.parametrize(
    ("norm_first", "activation"), [(False, "relu"), (True, "relu"), (False, "gelu"), (True, "gelu")]
)
@pytest.mark.parametrize("causal", [False, True])
def test_layer_matches_torch(norm_first: bool, activation: str, causal: bool) -> None:
    torch.manual_seed(0)
    reference = _torch_layer(norm_first, activation)
    _randomise_norms(reference)
    reference = reference.double().eval()
    ours = EncoderLayer(D_MODEL, HEADS, D_FF, activation=activation, norm_first=norm_first)
    ours = ours.double().eval()
    ours.load_torch_layer(reference)
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    mask = _padding_mask()
    out, weights = ours(x, mask=mask, causal=causal)
    expected = reference(
        x,
        src_mask=torch.ones(LENGTH, LENGTH, dtype=torch.bool).triu(1) if causal else None,
        src_key_padding_mask=~mask,
        is_causal=causal,
    )
    assert weights.shape == (BATCH, HEADS, LENGTH, LENGTH)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_matches_torch_stack(norm_first: bool) -> None:
    torch.manual_seed(0)
    final_norm = nn.LayerNorm(D_MODEL) if norm_first else None
    reference = nn.TransformerEncoder(
        _torch_layer(norm_first, "gelu"), 2, norm=final_norm, enable_nested_tensor=False
    )
    _randomise_norms(reference)
    reference = reference.double().eval()
    ours = Encoder(EncoderConfig(2, D_MODEL, HEADS, D_FF, activation="gelu", norm_first=norm_first))
    ours = ours.double().eval()
    for layer, torch_layer in zip(ours.layers, reference.layers, strict=True):
        layer.load_torch_layer(torch_layer)
    if norm_first:
        ours.final_norm.load_state_dict(reference.norm.state_dict())
    else:
        assert isinstance(ours.final_norm, nn.Identity)
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    mask = _padding_mask()
    out, weights = ours(x, mask=mask, need_weights=True)
    expected = reference(x, src_key_padding_mask=~mask)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert len(weights) == 2
    assert all(w.shape == (BATCH, HEADS, LENGTH, LENGTH) for w in weights)
    assert ours(x, mask=mask)[1] is None


def test_math_and_sdpa_layers_agree_in_training_mode_without_dropout() -> None:
    math_layer = EncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, norm_first=True).double()
    sdpa_layer = EncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, norm_first=True, attn_impl="sdpa")
    sdpa_layer = sdpa_layer.double()
    sdpa_layer.load_state_dict(math_layer.state_dict())
    x = torch.randn(BATCH, LENGTH, D_MODEL, dtype=torch.float64)
    expected, _ = math_layer(x, mask=_padding_mask(), causal=True)
    out, weights = sdpa_layer(x, mask=_padding_mask(), causal=True)
    assert weights is None
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_loader_rejects_a_different_layout() -> None:
    ours = EncoderLayer(D_MODEL, HEADS, D_FF, norm_first=False)
    with pytest.raises(ValueError, match="norm_first"):
        ours.load_torch_layer(_torch_layer(norm_first=True, activation="relu"))
    with pytest.raises(ValueError, match="activation"):
        ours.load_torch_layer(_torch_layer(norm_first=False, activation="gelu"))


def test_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(D_MODEL, HEADS, D_FF, activation="swish")


def test_attention_probs_dropout_is_its_own_knob() -> None:
    """``attention_probs_dropout`` drops attention weights only; null follows ``dropout``."""
    x = torch.randn(BATCH, LENGTH, D_MODEL)

    def encoder(**dropouts: float | None) -> Encoder:
        config = EncoderConfig(2, D_MODEL, HEADS, D_FF, norm_first=True, **dropouts)
        return Encoder(config).train()

    weights_only = encoder(dropout=0.0, attention_probs_dropout=0.5)
    assert not torch.equal(weights_only(x)[0], weights_only(x)[0])  # random: the weights drop
    residual_only = encoder(dropout=0.3, attention_probs_dropout=0.0)
    layer = residual_only.layers[0]
    assert (layer.attention.dropout.p, layer.feed_forward_dropout.p) == (0.0, 0.3)
    assert encoder(dropout=0.3).layers[0].attention.dropout.p == 0.3
    no_dropout = encoder(dropout=0.0, attention_probs_dropout=0.0)
    torch.testing.assert_close(no_dropout(x)[0], no_dropout.eval()(x)[0])
