"""Multi-head scaled dot-product attention, the transformer's attention (math | sdpa paths).

Holds ``MultiHeadAttention`` (with fused Q/K/V projections, packed inputs and loading from
``torch.nn.MultiheadAttention``), ``attention_mask`` (key padding + causal masks as one boolean
tensor), the implementation names ``ATTENTION_IMPLS`` and the CPU low-precision sdpa threshold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.attention import masked_softmax
from attnlab.models.packing import Packing

ATTENTION_IMPLS = ("math", "sdpa")
CPU_LOW_PRECISION_SDPA_MIN_LEN = 512  # measured: below it the explicit matmuls win in bf16 on CPU


def _cpu_flash_is_slower(key: Tensor) -> bool:
    """Whether torch's CPU flash attention loses to the explicit matmuls for these keys."""
    return (
        key.device.type == "cpu"
        and key.dtype in (torch.bfloat16, torch.float16)
        and key.size(-2) < CPU_LOW_PRECISION_SDPA_MIN_LEN
    )


def attention_mask(
    mask: Tensor | None, query_len: int, key_len: int, causal: bool, device: torch.device
) -> Tensor | None:
    """Which keys each query may attend to, as a boolean (B or 1, 1, T, S) tensor, True = allowed.

    ``mask`` is a key padding mask (B, S), True on real tokens: the opposite of the
    ``key_padding_mask`` of ``torch.nn.MultiheadAttention``, which is True on padding.
    With ``causal``, query t sees keys 0..t only.
    """
    allowed = None if mask is None else mask[:, None, None, :]
    if causal:
        lower = torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril()
        allowed = lower if allowed is None else allowed & lower
    return allowed


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``num_heads`` sub-spaces of ``d_model``.

    Q = X_q W_q, K = X_k W_k, V = X_v W_v are each split into heads of size d_k = d_model / H;
    every head computes softmax(Q K^T / sqrt(d_k)) V, the heads are concatenated back and
    projected by W_o. ``impl="math"`` writes this out and can return the (B, H, T, S) weights;
    ``impl="sdpa"`` hands it to ``F.scaled_dot_product_attention`` (fused kernels, no weights).
    On a CPU in bf16/fp16 with fewer than ``CPU_LOW_PRECISION_SDPA_MIN_LEN`` keys, sdpa runs the
    math path too: torch's CPU flash kernel is 1.5-3x slower there (forward + backward, T 128-256).
    ``fused_qkv`` computes Q, K and V of self-attention with one matmul against the three weights
    stacked (one read of X, one larger GEMM); the weights stay three separate layers.
    The linear layers are named ``query``, ``key``, ``value`` and ``output`` so pretrained
    checkpoints (BERT's ``attention.self.query`` ...) map onto them one to one.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        impl: str = "math",
        fused_qkv: bool = True,
    ) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}) so every head "
                f"gets d_model / num_heads dims; pick e.g. num_heads in "
                f"{[h for h in range(1, min(d_model, 16) + 1) if d_model % h == 0]}"
            )
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attention impl '{impl}'; choose one of {ATTENTION_IMPLS}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.impl = impl
        self.fused_qkv = fused_qkv
        self.query = nn.Linear(d_model, d_model, bias=bias)
        self.key = nn.Linear(d_model, d_model, bias=bias)
        self.value = nn.Linear(d_model, d_model, bias=bias)
        self.output = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, d_k): each head owns a contiguous d_k slice of the features."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, d_k) -> (B, T, D): concatenate the heads back."""
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.d_model)

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None) -> None:
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.dim() != 3 or x.size(-1) != self.d_model:
                raise ValueError(
                    f"{name} must be (batch, length, d_model={self.d_model}), got "
                    f"{tuple(x.shape)}; project it to d_model first"
                )
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key {tuple(key.shape)} and value {tuple(value.shape)} must share batch and length"
            )
        if mask is not None and mask.shape != key.shape[:2]:
            raise ValueError(
                f"mask must be a (batch, key_length) = {tuple(key.shape[:2])} boolean tensor, "
                f"True on real tokens; got {tuple(mask.shape)}"
            )

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        packing: Packing | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, T, D), key/value (B, S, D) -> out (B, T, D), weights (B, H, T, S) or None.

        Self-attention when ``key``/``value`` are None. ``mask`` (B, S) is True on real tokens.
        ``causal`` lets query t see keys up to t only. The math path always returns weights
        (before dropout); sdpa returns None unless ``need_weights``, which runs the math path.
        With ``packing``, ``query`` is the packed real tokens (N, D) of a self-attention, and so
        is the output: the projections skip the padding, attention runs on the padded layout
        under ``packing.mask``.
        """
        if packing is not None:
            q, k, v = self._fused_projections(query, (self.query, self.key, self.value), packing)
            out, weights = self._attend(q, k, v, packing.mask, causal, need_weights)
            return self.output(packing.pack(self._merge_heads(out))), weights
        key = query if key is None else key
        value = key if value is None else value
        if mask is not None:
            mask = mask.bool()
        self._check_inputs(query, key, value, mask)
        if self.fused_qkv and query is key and key is value:
            q, k, v = self._fused_projections(query, (self.query, self.key, self.value))
        elif self.fused_qkv and key is value:  # queries at some rows only (Encoder output_rows)
            q = self._split_heads(self.query(query))
            k, v = self._fused_projections(key, (self.key, self.value))
        else:
            q = self._split_heads(self.query(query))
            k = self._split_heads(self.key(key))
            v = self._split_heads(self.value(value))
        out, weights = self._attend(q, k, v, mask, causal, need_weights)
        return self.output(self._merge_heads(out)), weights

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Heads (B, H, T, d_k) -> (B, H, T, d_k) and the weights of the math path (or None)."""
        use_sdpa = self.impl == "sdpa" and not need_weights
        if use_sdpa and not _cpu_flash_is_slower(k):
            return self._sdpa(q, k, v, mask, causal), None
        out, weights = self._math(q, k, v, mask, causal)
        return out, None if use_sdpa else weights

    def _fused_projections(
        self, x: Tensor, layers: tuple[nn.Linear, ...], packing: Packing | None = None
    ) -> tuple[Tensor, ...]:
        """The projections of X by ``layers`` (Q, K, V or K, V), each (B, H, T, d_k), from one
        X [W_1; W_2; ...]^T matmul; packed X (N, D) is projected, then unpacked to (B, T)."""
        weight = torch.cat([layer.weight for layer in layers])
        bias = None if self.query.bias is None else torch.cat([layer.bias for layer in layers])
        out = F.linear(x, weight, bias)
        if packing is not None:
            out = packing.unpack(out)
        batch, length, _ = out.shape
        out = out.view(batch, length, len(layers), self.num_heads, -1)
        return out.permute(2, 0, 3, 1, 4).unbind(0)

    def _math(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool
    ) -> tuple[Tensor, Tensor]:
        """softmax(Q K^T / sqrt(d_k)) V written out; weights are exactly 0 where not allowed."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        allowed = attention_mask(mask, q.size(2), k.size(2), causal, q.device)
        weights = masked_softmax(scores, allowed)
        return self.dropout(weights) @ v, weights

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """The same through torch's fused kernels; with no padding mask, ``is_causal`` lets torch
        use its flash kernels, which take no explicit mask."""
        dropout_p = self.dropout.p if self.training else 0.0
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
        allowed = attention_mask(mask, q.size(2), k.size(2), causal, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        # A query with no allowed key (left padding + causal) gets 0 from the math path; some
        # fused kernels (cuDNN, bf16 on H100) return garbage there instead, so pin it to 0.
        return out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)

    @torch.no_grad()
    def load_torch_mha(self, mha: nn.MultiheadAttention) -> None:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (its fused in_proj split in 3)."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.num_heads:
            raise ValueError(
                f"torch MHA has embed_dim={mha.embed_dim}, num_heads={mha.num_heads}; this one has "
                f"d_model={self.d_model}, num_heads={self.num_heads}: build it with the same sizes"
            )
        if mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError(
                "only torch MHA with one fused in_proj (kdim = vdim = embed_dim), no bias_k/bias_v "
                "and add_zero_attn=False can be loaded"
            )
        if (mha.in_proj_bias is None) != (self.query.bias is None):
            raise ValueError(
                f"bias mismatch: build MultiHeadAttention with bias={mha.in_proj_bias is not None}"
            )
        projections = (self.query, self.key, self.value)
        for linear, weight in zip(projections, mha.in_proj_weight.chunk(3), strict=True):
            linear.weight.copy_(weight)
        if mha.in_proj_bias is not None:
            for linear, bias in zip(projections, mha.in_proj_bias.chunk(3), strict=True):
                linear.bias.copy_(bias)
        self.output.load_state_dict(mha.out_proj.state_dict())
