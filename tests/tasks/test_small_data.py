"""Small data of a user's own, with nothing tuned: the experiments' defaults hold up.

1,000 of the embedded digits downscaled to 14x14 PNGs in class folders train the ViT with only
``data.source.folder=...`` (the patch size and window, the shift and the step budget follow the
data), and 800 tweets in a CSV train the attention-pooling classifier with only the file and its
columns.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import digit_folder, read_metrics_csv

from attnlab import pipeline
from attnlab.data.tweets import TweetsDataModule

QUIET = ["logger=csv", "callbacks.rich_progress_bar=null", "++trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_vit_on_a_small_folder_of_14_pixel_digits(compose, trainer_spy, tmp_path: Path) -> None:
    """The issue's target: at least 0.93 test accuracy (chance 0.1), in under 3 CPU-minutes."""
    folder = digit_folder(tmp_path, size=14, per_class=100)
    pipeline.train(compose(["experiment=vit", f"data.source.folder={folder}", *QUIET]))
    metrics = trainer_spy.metrics()
    vit = trainer_spy.trainer.lightning_module.net
    assert vit.grid_size == 7  # patch_size auto: 2 pixels
    assert vit.patch_embedding.projection.kernel_size == (6, 6)  # patch_kernel auto: 3 patches
    assert trainer_spy.trainer.global_step >= 800  # trainer.min_steps: 115 epochs of 7 steps
    assert metrics["test/acc"] >= 0.93, metrics


@pytest.mark.slow
def test_attention_pooling_on_a_small_csv_of_tweets(
    compose, trainer_spy, tmp_path: Path, cache_dir: Path
) -> None:
    """800 labelled tweets in a CSV: macro-F1 well above the majority class's."""
    tweets = TweetsDataModule(source={"embedded": "tweets.tsv.gz"}, rating_column="rating")
    tweets.setup()
    path = tmp_path / "tweets.csv"
    rows = [
        (text, tweets.class_names[label])
        for text, (_, label) in zip(tweets.texts["train"], tweets.splits["train"], strict=True)
    ][:800]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("body", "sentiment"), *rows])
    data = [f"data.source.files={path}", "data.source.embedded=null", "data.text_column=body"]
    data += ["data.label_column=sentiment", "data.rating_column=null"]
    cfg = compose(["experiment=tweet_attention", *data, *QUIET])
    pipeline.train(cfg)
    metrics = trainer_spy.metrics()
    counts = [sum(1 for _, name in rows if name == c) for c in tweets.class_names]
    majority = max(counts) / len(rows)
    majority_f1 = 2 * majority / (1 + majority) / len(counts)  # one class right, the others 0
    assert metrics["test/f1"] > majority_f1 + 0.2, (metrics, majority_f1)
    epochs = read_metrics_csv(Path(cfg.paths.output_dir) / "csv" / "version_0" / "metrics.csv")
    losses = [float(r["train/loss_epoch"]) for r in epochs if r.get("train/loss_epoch")]
    assert losses[-1] < 0.8 * losses[0], losses
