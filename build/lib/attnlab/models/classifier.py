"""The seed's "Single Attention Mechanism" as a text classifier.

Embeddings e_1..e_n -> one scalar score per token -> alpha = softmax over real tokens ->
e = sum_i alpha_i e_i -> FC -> class logits. ``pooling='mean'`` is the baseline the seed argues
against (every token weighs the same).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.models.attention import AttentionPooling, MeanPooling


class AttentionPoolingClassifier(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 128,
        pooling: str = "attention",
        score: str = "mlp",
        score_hidden_dim: int | None = None,
        dropout: float = 0.1,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if pooling not in ("attention", "mean"):
            raise ValueError(f"model.pooling='{pooling}' is unknown; use 'attention' or 'mean'")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.pooling = (
            AttentionPooling(embed_dim, score, score_hidden_dim)
            if pooling == "attention"
            else MeanPooling()
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, T), mask (B, T) True on real tokens -> logits (B, C), weights (B, T)."""
        embeddings = self.dropout(self.embedding(input_ids))
        pooled, weights = self.pooling(embeddings, attention_mask)
        return self.fc(self.dropout(pooled)), weights


def load_glove(path: str | Path, vocab: list[str], dim: int) -> tuple[Tensor, int]:
    """Rows of a GloVe-format text file (``word v1 .. vd``) for ``vocab``; returns (rows, hits).

    Words missing from the file keep a small random vector; the caller copies the rows into its
    embedding table.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file not found: '{path}' (task.glove_path); check it")
    index = {word: i for i, word in enumerate(vocab)}
    rows = torch.randn(len(vocab), dim) * 0.1
    hits = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            word, *values = line.rstrip().split(" ")
            if word not in index:
                continue
            if len(values) != dim:
                raise ValueError(
                    f"{path}:{line_no} has {len(values)} values but the embeddings have {dim}: "
                    "set model.embed_dim to the file's dimension"
                )
            rows[index[word]] = torch.tensor([float(v) for v in values])
            hits += 1
    return rows, hits
