"""Optional GloVe initialisation of the classifier's embeddings."""

from __future__ import annotations

import pytest
import torch

from attnlab import pipeline
from attnlab.models.classifier import load_glove


def write_glove(path, rows: dict[str, list[float]]) -> None:
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()))


def test_load_glove_copies_known_words_and_counts_hits(tmp_path) -> None:
    write_glove(tmp_path / "g.txt", {"love": [1.0, 2.0, 3.0], "zzz": [0.0, 0.0, 0.0]})
    rows, hits = load_glove(tmp_path / "g.txt", ["[PAD]", "love", "hate"], dim=3)
    assert hits == 1 and rows.shape == (3, 3)
    assert torch.equal(rows[1], torch.tensor([1.0, 2.0, 3.0]))


def test_glove_dimension_mismatch_names_the_fix(tmp_path) -> None:
    write_glove(tmp_path / "g.txt", {"love": [1.0, 2.0]})
    with pytest.raises(ValueError, match="embed_dim"):
        load_glove(tmp_path / "g.txt", ["love"], dim=3)
    with pytest.raises(FileNotFoundError, match="glove_path"):
        load_glove(tmp_path / "missing.txt", ["love"], dim=3)


def test_training_with_glove_initialises_the_embedding(compose, tmp_path, capsys) -> None:
    write_glove(tmp_path / "g.txt", {w: [0.5] * 8 for w in ("love", "good", "hate", "bad")})
    cfg = compose(
        [
            "experiment=tweet_attention",
            "debug=fdr",
            "model.embed_dim=8",
            f"task.glove_path={tmp_path / 'g.txt'}",
        ]
    )
    pipeline.train(cfg)
    assert "GloVe: 4/" in capsys.readouterr().out
