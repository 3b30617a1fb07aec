"""A decoder-only Transformer language model, sampling, and a parameter counter.

Every language model in the project maps ids (B, T) to next-token logits (B, T, V): logits at t
predict token t + 1 and depend on tokens 0..t only. ``generate`` works with any such model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.models.losses import linear_cross_entropy
from attnlab.models.positional import build_positional
from attnlab.models.transformer import Encoder, EncoderConfig


def count_parameters(model: nn.Module) -> int:
    """Number of parameters; a tied (shared) tensor counts once."""
    return sum(p.numel() for p in model.parameters())


class TransformerLM(nn.Module):
    """Embed, add positions, causal Transformer (pre-norm by default), final LN, vocab projection.

    Token embeddings are initialised N(0, 1/d_model) and multiplied by sqrt(d_model), as in
    Vaswani et al. (2017, sec. 3.4): the scaled token vector then has unit-size components, on a
    par with the sinusoidal table, while the same matrix used as the (tied) output layer gives
    logits of order 1. The final LN comes from the Encoder when ``norm_first``; post-norm layers
    already end in one.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        d_ff: int = 512,
        max_len: int = 256,
        dropout: float = 0.1,
        tie_weights: bool = True,
        positional: str = "sinusoidal",
        pos_base: float = 10000.0,
        norm_first: bool = True,
        attn_impl: str = "sdpa",
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.token_embeddings = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.token_embeddings.weight, std=d_model**-0.5)
        self.positional = build_positional(positional, d_model, max_len, pos_base)
        self.dropout = nn.Dropout(dropout)
        self.encoder = Encoder(EncoderConfig.of(locals()))
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.token_embeddings.weight

    def embed(self, ids: Tensor) -> Tensor:
        """Token embeddings scaled by sqrt(d_model), plus positions, then dropout."""
        x = self.token_embeddings(ids) * math.sqrt(self.d_model)
        return self.dropout(self.positional(x))

    loss_from_labels = True  # forward(ids, labels=...) returns the loss (LanguageModelTask)

    def forward(
        self,
        ids: Tensor,
        mask: Tensor | None = None,
        labels: Tensor | None = None,
        ignore_index: int = -100,
    ) -> Tensor:
        """ids (B, T), mask (B, T) True on real tokens -> logits (B, T, vocab_size).

        With ``labels`` (B, T), the mean next-token cross-entropy over the labels that are not
        ``ignore_index`` instead, computed through the vocabulary projection chunk by chunk
        (``linear_cross_entropy``): the same value and gradients, without the (B, T, V) logits.
        """
        x, _ = self.encoder(self.embed(ids), mask=mask, causal=True)
        if labels is None:
            return self.lm_head(x)
        loss, _ = linear_cross_entropy(
            x.flatten(0, 1), self.lm_head.weight, labels.flatten(), ignore_index
        )
        return loss

    def attention_maps(self, ids: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """The causal self-attention weights of every layer, [(B, H, T, T)], for plots."""
        _, weights = self.encoder(self.embed(ids), mask=mask, causal=True, need_weights=True)
        return weights


@torch.no_grad()
def generate(
    model: nn.Module,
    ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
) -> Tensor:
    """Extend ids (B, T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens).

    Works for any model mapping ids to logits (B, T, V); the context is cropped to the last
    ``model.max_len`` tokens when the model has one. Runs in eval mode (no dropout) and restores
    the model's mode afterwards. ``greedy`` takes the argmax; otherwise samples from
    softmax(logits / temperature), restricted to the ``top_k`` most likely tokens if given.
    """
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); use greedy=True for argmax")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (got {top_k}) or None for the full vocabulary")
    max_len = getattr(model, "max_len", None)
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        context = ids if max_len is None else ids[:, -max_len:]
        logits = model(context)[:, -1]
        if greedy:
            next_id = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth_best = logits.topk(min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth_best, float("-inf"))
            next_id = torch.multinomial(logits.softmax(-1), num_samples=1)
        ids = torch.cat([ids, next_id], dim=1)
    model.train(was_training)
    return ids
