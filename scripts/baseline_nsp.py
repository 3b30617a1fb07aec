"""A lexical peer for next-sentence prediction: how much of B's vocabulary is already in A.

The score of a pair is the IDF-weighted share of B's distinct word pieces that also occur in A
(IDF over the training documents, so common pieces count little); a pair scoring above one
threshold, the one that is most accurate on the training pairs, is called IsNext. It reads the
pairs ``experiment=bert_mlm_nsp`` trains and tests on (same documents, seed and tokenizer), so
its accuracy compares with the model's ``test/nsp_acc``.

    python scripts/baseline_nsp.py [data overrides]

Writes ``<paths.output_root>/baselines/nsp_overlap.json`` (``outputs/`` unless ATTNLAB_ROOT is set).
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import torch
from hydra.utils import instantiate

from attnlab.data.pretraining_examples import IS_NEXT
from attnlab.data.token_cache import TokenizedSplit
from attnlab.utils.config import compose_config

IGNORE_INDEX = -100


def idf(documents: TokenizedSplit) -> dict[int, float]:
    """log((D + 1) / (df + 1)) per token id, over the documents of a split."""
    starts, ends = documents.document_tokens()
    frequency = Counter(
        t for a, b in zip(starts, ends, strict=True) for t in set(documents.tokens[a:b].tolist())
    )
    count = documents.num_documents
    return {t: math.log((count + 1) / (n + 1)) for t, n in frequency.items()}


def overlap(example: dict, weights: dict[int, float], unseen: float) -> float:
    """IDF-weighted share of the distinct pieces of B that occur in A (masked ids restored)."""
    ids, labels = example["input_ids"].tolist(), example.get("labels")
    if labels is not None:  # validation/test pairs are masked once: read the original ids
        ids = [i if y == IGNORE_INDEX else y for i, y in zip(ids, labels.tolist(), strict=True)]
    first_sep = int((example["token_type_ids"] == 0).sum()) - 1  # [CLS] A [SEP] | B [SEP]
    a, b = set(ids[1:first_sep]), set(ids[first_sep + 1 : -1])
    weight = {t: weights.get(t, unseen) for t in b}
    return sum(weight[t] for t in b & a) / max(sum(weight.values()), 1e-9)


def accuracy(scores: torch.Tensor, labels: torch.Tensor, threshold: float) -> float:
    predicted = torch.where(scores > threshold, IS_NEXT, 1 - IS_NEXT)
    return float((predicted == labels).float().mean())


def main(overrides: list[str]) -> dict[str, float]:
    cfg = compose_config(["experiment=bert_mlm_nsp", *overrides])
    datamodule = instantiate(cfg.data)  # tokenizer cache: paths.cache_dir, as train.py's
    datamodule.setup("fit")
    weights = idf(datamodule.splits["train"])
    unseen = max(weights.values())
    scores, labels = {}, {}
    for split, examples in datamodule.examples.items():
        examples = [examples[i] for i in range(len(examples))]
        scores[split] = torch.tensor([overlap(e, weights, unseen) for e in examples])
        labels[split] = torch.tensor([e["next_sentence_label"] for e in examples])
    candidates = scores["train"].unique().tolist()
    threshold = max(candidates, key=lambda t: accuracy(scores["train"], labels["train"], t))
    results = {split: accuracy(scores[split], labels[split], threshold) for split in scores}
    print(f"threshold {threshold:.3f} (most accurate on the {len(labels['train'])} train pairs)")
    print("| split | pairs | NSP accuracy |\n|---|---|---|")
    for split, value in results.items():
        print(f"| {split} | {len(labels[split])} | {value:.3f} |")
    out = Path(cfg.paths.output_root) / "baselines" / "nsp_overlap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"overrides": overrides, "threshold": threshold, **results}))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
