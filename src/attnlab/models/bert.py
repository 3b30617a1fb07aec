"""BERT (Devlin et al., 2019): a post-norm Transformer encoder pretrained by filling in blanks.

    x = LN(E_tok[ids] + E_seg[segments] + E_pos[0..T-1]);  x = Dropout(x)
    h = Encoder(x)                                 (post-norm layers, exact GELU, LN eps 1e-12)
    MLM:  logits = LN(GELU(W h_i + b)) E_tok^T + b_v   at the masked positions i only
    NSP:  logits = W_nsp tanh(W_p h_0 + b_p)           from [CLS] (position 0)

The decoder of the masked-LM head shares its weight with the token embeddings (its bias is its
own). Gathering the masked positions before the decoder keeps the (N, vocab) logits small: 15% of
the tokens instead of all of them. Where, parameter by parameter,
Hugging Face's BERT keeps the same weights (``attnlab.hf.bert``), so real checkpoints load into
these modules and export back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab.models.attention import AttentionPooling, MeanPooling
from attnlab.models.positional import build_positional
from attnlab.models.transformer import Encoder, EncoderConfig

INIT_STD = 0.02  # BERT's initializer_range


def init_bert_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights, zero biases, unit LayerNorms: BERT's initialisation."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertEmbeddings(nn.Module):
    """Token + segment + position embeddings, summed, then LayerNorm and dropout."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int,
        type_vocab_size: int,
        dropout: float,
        layer_norm_eps: float,
        positional: str,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, d_model)
        self.positional = build_positional(positional, d_model, max_len)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """ids (B, T), segments (B, T) (default all 0) -> (B, T, D)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(self.positional(x)))


class BertModel(nn.Module):
    """The BERT encoder: embeddings, post-norm ``Encoder``, and the tanh pooler on [CLS]."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_heads: int = 2,
        num_layers: int = 2,
        d_ff: int = 512,
        max_len: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        positional: str = "learned",
        pad_id: int = 0,
        attn_impl: str = "sdpa",
        fused_qkv: bool = True,
        skip_padding: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.embeddings = BertEmbeddings(
            vocab_size,
            d_model,
            max_len,
            type_vocab_size,
            dropout,
            layer_norm_eps,
            positional,
            pad_id,
        )
        self.encoder = Encoder(EncoderConfig.of(locals(), activation="gelu", norm_first=False))
        self.pooler = nn.Linear(d_model, d_model)
        self.apply(init_bert_weights)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        output_rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """ids (B, T), segments (B, T), mask (B, T) True on real tokens ->
        hidden states (B, T, D) and the pooled [CLS] vector tanh(W h_0 + b) (B, D).

        ``output_rows`` (B, M), first column 0 ([CLS]): hidden states at those rows only,
        (B, M, D), the last layer computing nothing else.
        """
        embedded = self.embeddings(input_ids, token_type_ids)
        hidden, _ = self.encoder(embedded, mask=attention_mask, output_rows=output_rows)
        return hidden, torch.tanh(self.pooler(hidden[:, 0]))

    def attention_maps(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> list[Tensor]:
        """The self-attention weights of every layer, [(B, H, T, T)], for plots."""
        x = self.embeddings(input_ids, token_type_ids)
        _, weights = self.encoder(x, mask=attention_mask, need_weights=True)
        return weights


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder (weight tied to the token embeddings, own bias)."""

    def __init__(self, embeddings: nn.Embedding, layer_norm_eps: float) -> None:
        super().__init__()
        vocab_size, d_model = embeddings.weight.shape
        self.dense = nn.Linear(d_model, d_model)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.decoder = nn.Linear(d_model, vocab_size)
        self.apply(init_bert_weights)
        self.decoder.weight = embeddings.weight

    def forward(self, hidden: Tensor) -> Tensor:
        """(..., D) -> (..., vocab_size)."""
        return self.decoder(self.norm(self.activation(self.dense(hidden))))


def cls_and_masked_rows(masked: Tensor) -> tuple[Tensor, Tensor]:
    """masked (B, T) -> rows (B, M): position 0 ([CLS]), then each sequence's masked positions
    in order, padded with 0; and is_masked (B, M), True where a row is a masked position, so
    ``hidden[is_masked]`` follows the row-major order of ``labels[masked]``."""
    batch, length = masked.shape
    positions = torch.arange(length, device=masked.device).expand(batch, length)
    wanted = masked.clone()
    wanted[:, 0] = True
    # Wanted positions sort first, in order; the rest after them (offset by the length).
    order = torch.where(wanted, positions, positions + length).sort(dim=1).values
    order = order[:, : int(wanted.sum(1).max())]
    real = order < length
    rows = torch.where(real, order, 0)
    return rows, real & masked.gather(1, rows)


class BertForPreTraining(nn.Module):
    """``BertModel`` with the masked-LM head and the next-sentence-prediction head."""

    def __init__(self, vocab_size: int, last_layer_masked_only: bool = True, **bert: Any) -> None:
        super().__init__()
        self.last_layer_masked_only = last_layer_masked_only
        self.bert = BertModel(vocab_size, **bert)
        self.max_len = self.bert.max_len
        eps = self.bert.embeddings.norm.eps
        self.mlm_head = MaskedLMHead(self.bert.embeddings.word_embeddings, eps)
        self.nsp_head = nn.Linear(self.bert.pooler.out_features, 2)
        init_bert_weights(self.nsp_head)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """-> MLM logits and NSP logits (B, 2).

        MLM logits are (N, V) for the N True entries of ``masked_positions`` (B, T), in
        row-major order (the order of ``labels[masked_positions]``); (B, T, V) when it is None.
        """
        if masked_positions is not None and self.last_layer_masked_only:
            rows, is_masked = cls_and_masked_rows(masked_positions)
            hidden, pooled = self.bert(input_ids, token_type_ids, attention_mask, rows)
            return self.mlm_head(hidden[is_masked]), self.nsp_head(pooled)
        hidden, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        if masked_positions is not None:
            hidden = hidden[masked_positions]  # gather first: the decoder sees N rows, not B*T
        return self.mlm_head(hidden), self.nsp_head(pooled)

    def attention_maps(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> list[Tensor]:
        return self.bert.attention_maps(input_ids, token_type_ids, attention_mask)


POOLINGS = ("cls", "mean", "attention")


class BertClassifier(nn.Module):
    """A BERT encoder (``encoder``: a pretrained one, see ``attnlab.hf.bert.bert_classifier``;
    else a new one of ``bert`` sizes) with a classification head on a pooled vector.

    ``pooling``: ``cls`` (BERT's tanh pooler on [CLS], as in the paper), ``mean`` (over real
    tokens) or ``attention`` (the seed's learned-query attention pooling). Returns the pooling
    weights beside the logits, like ``AttentionPoolingClassifier``, so the same task and plots
    serve both.
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int = 30522,
        pooling: str = "cls",
        encoder: BertModel | None = None,
        score: str = "mlp",
        dropout: float = 0.1,
        skip_padding: bool = False,
        **bert: Any,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling='{pooling}' is unknown; use one of {POOLINGS}")
        if encoder is not None and encoder.vocab_size != vocab_size:
            raise ValueError(
                f"the pretrained BERT has {encoder.vocab_size} tokens, the data {vocab_size}: use "
                "its vocabulary (data.tokenizer.vocab=bert-base-uncased or PATH/vocab.txt)"
            )
        self.bert = encoder or BertModel(
            vocab_size, dropout=dropout, skip_padding=skip_padding, **bert
        )
        width = self.bert.pooler.out_features
        self.pooling = pooling
        if pooling == "attention":
            self.pool = AttentionPooling(width, score)
        elif pooling == "mean":
            self.pool = MeanPooling()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        init_bert_weights(self.fc)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, T), mask (B, T) True on real tokens -> logits (B, C), weights (B, T)."""
        hidden, pooled = self.bert(input_ids, attention_mask=attention_mask)
        if self.pooling == "cls":
            weights = torch.zeros(hidden.shape[:2], device=hidden.device, dtype=hidden.dtype)
            weights[:, 0] = 1.0
        else:
            pooled, weights = self.pool(hidden, attention_mask)
        return self.fc(self.dropout(pooled)), weights

    def attention_maps(self, input_ids: Tensor) -> list[Tensor]:
        return self.bert.attention_maps(input_ids)
