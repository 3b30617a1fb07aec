"""Recurrent models: the baseline attention was invented to fix.

An RNN reads a sequence one step at a time, carrying everything it knows in a fixed-size state;
these modules are the reference point for the attention models (quality, and throughput against
sequence length).
"""

from __future__ import annotations

from torch import Tensor, nn

RNN_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNNLM(nn.Module):
    """Embed, stacked LSTM/GRU, project to the vocabulary: ids (B, T) -> logits (B, T, V).

    Dropout is applied to the embeddings, between layers, and to the last layer's outputs.
    ``tie_weights`` shares the embedding with the output layer (Press & Wolf, 2017), which needs
    hidden_dim == embed_dim.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.1,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if cell not in RNN_CELLS:
            raise ValueError(f"unknown cell '{cell}'; choose one of {list(RNN_CELLS)}")
        if tie_weights and hidden_dim != embed_dim:
            raise ValueError(
                f"tie_weights needs hidden_dim == embed_dim (got {hidden_dim} != {embed_dim}); "
                "set them equal or use tie_weights=False"
            )
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CELLS[cell](
            embed_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.lm_head = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            self.lm_head.weight = self.embedding.weight

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids (B, T) -> logits (B, T, vocab_size).

        ``mask`` is accepted so every LM shares one signature, and is not needed: with right
        padding, a left-to-right RNN reaches the padding only after the last real token, so
        logits at real positions are unaffected (those at padding must be ignored by the loss).
        """
        hidden, _ = self.rnn(self.dropout(self.embedding(ids)))
        return self.lm_head(self.dropout(hidden))
