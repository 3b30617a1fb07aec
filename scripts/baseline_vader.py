"""The peer, side by side: VADER and the majority class on our tweets test split.

VADER (Hutto & Gilbert, 2014) is the lexicon-based sentiment analyser whose paper the embedded
tweets come from. Its compound score is mapped to labels with the usual +-0.05 thresholds
(binary: compound > 0 is positive). The split, labels and metrics (accuracy, macro-F1 from
torchmetrics) are the ones ``train.py`` uses, so the rows compare with ours.

    python scripts/baseline_vader.py [data overrides, e.g. data.label_scheme=binary]

Writes ``<paths.output_root>/baselines/vader.json`` (``outputs/`` unless ATTNLAB_ROOT is set).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import torch
from hydra.utils import instantiate
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from attnlab.utils.config import compose_config

VADER_THRESHOLD = 0.05


def vader_label(compound: float, class_names: list[str]) -> int:
    """VADER's compound score as an index into ``class_names``."""
    if "neutral" not in class_names:
        return class_names.index("positive" if compound > 0 else "negative")
    if compound >= VADER_THRESHOLD:
        return class_names.index("positive")
    if compound <= -VADER_THRESHOLD:
        return class_names.index("negative")
    return class_names.index("neutral")


def scores(predicted: list[int], target: list[int], num_classes: int) -> dict[str, float]:
    p, t = torch.tensor(predicted), torch.tensor(target)
    return {
        "acc": float(multiclass_accuracy(p, t, num_classes, average="micro")),
        "f1": float(multiclass_f1_score(p, t, num_classes, average="macro")),
    }


def main(overrides: list[str]) -> dict[str, dict[str, float]]:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as error:
        raise SystemExit("needs vaderSentiment: pip install -e '.[dev]'") from error
    cfg = compose_config(["experiment=tweet_attention", *overrides])
    datamodule = instantiate(cfg.data)  # tokenizer cache: paths.cache_dir, as train.py's
    datamodule.setup("test")
    names = datamodule.class_names
    test_labels = [label for _, label in datamodule.splits["test"]]
    analyzer = SentimentIntensityAnalyzer()
    vader = [
        vader_label(analyzer.polarity_scores(text)["compound"], names)
        for text in datamodule.texts["test"]
    ]
    majority = Counter(label for _, label in datamodule.splits["train"]).most_common(1)[0][0]
    results = {
        "vader": scores(vader, test_labels, len(names)),
        f"majority ({names[majority]})": scores(
            [majority] * len(test_labels), test_labels, len(names)
        ),
    }
    print(f"test split: {len(test_labels)} tweets, classes {names}")
    print("| model | test acc | test macro-F1 |\n|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {result['acc']:.3f} | {result['f1']:.3f} |")
    out = Path(cfg.paths.output_root) / "baselines" / "vader.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"overrides": overrides, "classes": names, **results}, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
