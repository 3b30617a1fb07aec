"""The Transformer encoder: self-attention and a position-wise MLP, each wrapped in a residual.

Post-norm (the seed, Vaswani et al. 2017, BERT):
    x = LN(x + Dropout(SelfAttn(x)));  x = LN(x + Dropout(FFN(x)))
Pre-norm (GPT-2, ViT; trains deep stacks without warm-up tricks):
    x = x + Dropout(SelfAttn(LN(x)));  x = x + Dropout(FFN(LN(x)))   (then one final LN)

Names are systematic so pretrained checkpoints map onto them: in each layer ``attention`` (with
``query``/``key``/``value``/``output``) and its ``attention_norm``, ``feed_forward`` (with
``intermediate``/``output``) and its ``feed_forward_norm``. BERT's ``attention.output.LayerNorm``
is ``attention_norm``, ``output.LayerNorm`` is ``feed_forward_norm``; ViT's ``layernorm_before``
and ``layernorm_after`` are the same two norms in pre-norm order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor, nn

from attnlab.models.multi_head import MultiHeadAttention
from attnlab.models.packing import Packing

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}  # GELU is the exact (erf) one, as in BERT


class FeedForward(nn.Module):
    """FFN(x) = Linear(Dropout(act(Linear(x)))): d_model -> d_ff -> d_model at every position."""

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.1, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation '{activation}'; choose one of {list(ACTIVATIONS)}"
            )
        self.intermediate = nn.Linear(d_model, d_ff)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.dropout(self.activation(self.intermediate(x))))


def gather_rows(x: Tensor, rows: Tensor) -> Tensor:
    """x (B, T, D), rows (B, M) positions -> (B, M, D): x[b, rows[b, m]]."""
    return x.gather(1, rows.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class EncoderLayer(nn.Module):
    """One encoder block: self-attention then feed-forward, post-norm or pre-norm."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        attn_impl: str = "math",
        fused_qkv: bool = True,
        attention_probs_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.activation_name = activation
        self.attention = MultiHeadAttention(
            d_model,
            num_heads,
            dropout if attention_probs_dropout is None else attention_probs_dropout,
            impl=attn_impl,
            fused_qkv=fused_qkv,
        )
        self.attention_dropout = nn.Dropout(dropout)
        self.attention_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.feed_forward = FeedForward(d_model, d_ff, dropout, activation)
        self.feed_forward_dropout = nn.Dropout(dropout)
        self.feed_forward_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)

    def _self_attention(
        self,
        x: Tensor,
        query: Tensor,
        mask: Tensor | None,
        causal: bool,
        need_weights: bool,
        packing: Packing | None,
    ) -> tuple[Tensor, Tensor | None]:
        if packing is not None:
            out, weights = self.attention(x, need_weights=need_weights, packing=packing)
        else:
            out, weights = self.attention(
                query, x, x, mask=mask, causal=causal, need_weights=need_weights
            )
        return self.attention_dropout(out), weights

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        rows: Tensor | None = None,
        packing: Packing | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), mask (B, T) True on real tokens -> x (B, T, D), weights (B, H, T, T)|None.

        ``rows`` (B, M) computes the output at those positions only, (B, M, D): every token is
        still a key and value, but the queries, output projection and feed-forward run on M
        rows (a model that reads a few outputs skips the rest of its last layer's work).
        With ``packing`` (bidirectional), x and the output are the packed real tokens (N, D).
        The math attention returns its weights even when ``need_weights`` is False.
        """
        if rows is not None and causal:
            raise ValueError(
                "rows= needs bidirectional attention: causal queries must stay in place"
            )
        if packing is not None and (causal or rows is not None):
            raise ValueError("packing= needs bidirectional attention over every row of x")
        pick = (lambda h: h) if rows is None else (lambda h: gather_rows(h, rows))
        if self.norm_first:
            normed = self.attention_norm(x)
            attended, weights = self._self_attention(
                normed, pick(normed), mask, causal, need_weights, packing
            )
            x = pick(x) + attended
            x = x + self.feed_forward_dropout(self.feed_forward(self.feed_forward_norm(x)))
        else:
            attended, weights = self._self_attention(
                x, pick(x), mask, causal, need_weights, packing
            )
            x = self.attention_norm(pick(x) + attended)
            x = self.feed_forward_norm(x + self.feed_forward_dropout(self.feed_forward(x)))
        return x, weights

    def load_torch_layer(self, layer: nn.TransformerEncoderLayer) -> None:
        """Copy the weights of a ``torch.nn.TransformerEncoderLayer`` built the same way."""
        torch_activation = {1: "relu", 2: "gelu"}.get(layer.activation_relu_or_gelu)
        theirs = (layer.norm_first, torch_activation, layer.norm1.eps)
        ours = (self.norm_first, self.activation_name, self.attention_norm.eps)
        if theirs != ours:
            raise ValueError(
                f"torch layer has (norm_first, activation, layer_norm_eps) = {theirs}, this one "
                f"{ours}: build EncoderLayer with the same settings"
            )
        self.attention.load_torch_mha(layer.self_attn)
        self.attention_norm.load_state_dict(layer.norm1.state_dict())
        self.feed_forward.intermediate.load_state_dict(layer.linear1.state_dict())
        self.feed_forward.output.load_state_dict(layer.linear2.state_dict())
        self.feed_forward_norm.load_state_dict(layer.norm2.state_dict())


@dataclass(frozen=True)
class EncoderConfig:
    """The hyperparameters of an encoder stack: the one object the Transformer LM, BERT and the
    ViT build their ``Encoder`` from (each with its family's defaults: BERT post-norm with
    LN eps 1e-12, the LM and the ViT pre-norm).

    ``final_norm`` null: a final LayerNorm when pre-norm. ``fused_qkv``: one (D, 3D) matmul for
    the queries, keys and values. ``skip_padding``: the layers run on the packed real tokens.
    ``attention_probs_dropout`` (HF's ``attention_probs_dropout_prob``) null: ``dropout`` on the
    attention weights too; 0 keeps torch's fused CPU attention kernel, which takes no dropout.
    """

    num_layers: int
    d_model: int
    num_heads: int
    d_ff: int
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False
    layer_norm_eps: float = 1e-5
    attn_impl: str = "math"
    final_norm: bool | None = None
    fused_qkv: bool = True
    skip_padding: bool = False
    attention_probs_dropout: float | None = None

    @classmethod
    def of(cls, arguments: Mapping[str, Any], **fixed: Any) -> EncoderConfig:
        """The config from a model constructor's arguments (its ``locals()``): the fields it
        takes, plus ``fixed``, what its family fixes (e.g. BERT's post-norm GELU)."""
        names = {field.name for field in fields(cls)} - set(fixed)
        return cls(**{k: v for k, v in arguments.items() if k in names}, **fixed)


class Encoder(nn.Module):
    """A stack of ``num_layers`` EncoderLayers, plus a final LayerNorm (default: when pre-norm).

    Pre-norm layers leave the residual stream un-normalised, so the stack ends with one LN;
    post-norm layers already end in one.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.skip_padding = config.skip_padding
        self.layers = nn.ModuleList(
            EncoderLayer(
                config.d_model,
                config.num_heads,
                config.d_ff,
                config.dropout,
                config.activation,
                config.norm_first,
                config.layer_norm_eps,
                config.attn_impl,
                config.fused_qkv,
                config.attention_probs_dropout,
            )
            for _ in range(config.num_layers)
        )
        final_norm = config.norm_first if config.final_norm is None else config.final_norm
        norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.final_norm = norm if final_norm else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        output_rows: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor] | None]:
        """x (B, T, D) -> hidden states (B, T, D), per-layer weights [(B, H, T, T)] or None.

        ``output_rows`` (B, M): the last layer computes those positions only -> (B, M, D).
        ``skip_padding`` (bidirectional, a mask with padding): the layers run on the real tokens
        packed (``attnlab.models.packing``); padded positions come out as zeros. A last layer
        with ``output_rows`` runs on the padded layout (its queries are a few rows anyway).
        """
        packing = None
        if self.skip_padding and mask is not None and not causal and not bool(mask.all()):
            packing = Packing(mask)
            x = packing.pack(x)
        all_weights = [] if need_weights else None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            rows = output_rows if i == last else None
            if rows is not None and packing is not None:
                x, packing = packing.unpack(x), None
            x, weights = layer(
                x, mask=mask, causal=causal, need_weights=need_weights, rows=rows, packing=packing
            )
            if all_weights is not None:
                all_weights.append(weights)
        x = self.final_norm(x)
        return (x if packing is None else packing.unpack(x)), all_weights
