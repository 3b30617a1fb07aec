"""Tweets -> token ids and sentiment labels, for the attention-pooling classifier.

The embedded default is the 4,200 human-rated tweets of the VADER paper (see
``embedded/tweets.NOTICE.md``). Their labels are derived here from the mean rating, so the
threshold is a config value: ``ternary`` gives negative / neutral / positive around
+-``neutral_threshold``; ``binary`` drops the neutral band and keeps negative / positive.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value
from torch import Tensor
from torch.utils.data import DataLoader

from attnlab.data.base import TokenizedDataModule, first_examples
from attnlab.data.collate import ClassificationCollator
from attnlab.data.interface import TextInterface
from attnlab.data.packed import ENCODE_BATCH, LabelledSequences, PackedSequences
from attnlab.data.sources import load_splits, require_columns
from attnlab.data.tokenization import build_tokenizer
from attnlab.errors import DataError

LABEL_SCHEMES = {"ternary": ["negative", "neutral", "positive"], "binary": ["negative", "positive"]}


def rating_to_label(rating: float, scheme: str, threshold: float) -> int | None:
    """Class index of a rating under ``scheme``; None when binary drops a neutral rating."""
    if rating > threshold:
        return len(LABEL_SCHEMES[scheme]) - 1
    if rating < -threshold:
        return 0
    return 1 if scheme == "ternary" else None


class TweetsDataModule(TokenizedDataModule):
    """Text classification data from a hub dataset, local files or the embedded tweets.

    ``vocab_size``, ``pad_id``, ``num_classes`` and ``class_names`` are ready on first access,
    before ``setup``, so configs can hand them to the model (``${datamodule:vocab_size}``).
    """

    def __init__(
        self,
        source: Mapping[str, Any],
        text_column: str = "text",
        label_column: str | None = "label",
        rating_column: str | None = None,
        label_scheme: str = "ternary",
        neutral_threshold: float = 0.5,
        tokenizer: Mapping[str, Any] | None = None,
        bert_format: bool = False,
        cache_dir: str = "outputs/cache",
        **splits_and_loader: Any,
    ) -> None:
        """``splits_and_loader``: batch size, workers, split fractions, seed (SplitDataModule)."""
        interface = TextInterface(bert_format=bert_format)
        super().__init__(interface, **{"batch_size": 64, **splits_and_loader})
        if label_scheme not in LABEL_SCHEMES:
            raise DataError(
                f"data.label_scheme='{label_scheme}' is unknown; use one of {list(LABEL_SCHEMES)}"
            )
        if rating_column is None and label_column is None:
            raise DataError("set data.label_column (or data.rating_column to derive labels)")
        self.source = dict(source)
        self.text_column = text_column
        self.label_column = label_column
        self.rating_column = rating_column
        self.label_scheme = label_scheme
        self.neutral_threshold = neutral_threshold
        self.tokenizer_args = dict(tokenizer or {})
        self.cache_dir = Path(cache_dir)
        self.splits: dict[str, LabelledSequences] = {}
        self.texts: dict[str, list[str]] = {}

    # What the model needs, available before setup.
    @property
    def num_classes(self) -> int:
        return len(self._ready().class_names)

    def _load(self) -> None:
        raw = load_splits(
            **self.source,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        columns = {"text_column": self.text_column}
        columns["rating_column" if self.rating_column else "label_column"] = (
            self.rating_column or self.label_column
        )
        require_columns(raw["train"], columns)
        texts, labels = self._texts_and_labels(raw)
        if self.tokenizer is None:  # else restored from a checkpoint: keep its ids
            self.tokenizer = build_tokenizer(texts["train"], self.cache_dir, **self.tokenizer_args)
        self.texts = texts
        self.splits = {name: self._pack(texts[name], labels[name]) for name in texts}

    def _pack(self, texts: list[str], labels: list[int]) -> LabelledSequences:
        """Token ids packed (2 bytes a token below 65,536 ids), ENCODE_BATCH texts at a time."""
        encode = self.interface.encode_ids
        batches = (encode(texts[i : i + ENCODE_BATCH]) for i in range(0, len(texts), ENCODE_BATCH))
        return LabelledSequences(PackedSequences.pack(batches, self.tokenizer.vocab_size), labels)

    def _check_ratings_are_numbers(self, name: str, split: Dataset) -> None:
        feature = split.features[self.rating_column]
        if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint", "float")):
            return
        sample = next((v for v in split[self.rating_column] if v is not None), None)
        kind = feature.dtype if isinstance(feature, Value) else type(feature).__name__
        raise DataError(
            f"column '{self.rating_column}' (data.rating_column) of the '{name}' split holds "
            f"{'text' if 'string' in kind else kind} values "
            f"(e.g. {sample!r}), not numbers: give numeric ratings, or name a column of class "
            "labels with data.label_column=COLUMN data.rating_column=null"
        )

    def _texts_and_labels(self, raw: DatasetDict) -> tuple[dict, dict]:
        texts, labels = {}, {}
        if self.rating_column:
            self.class_names = LABEL_SCHEMES[self.label_scheme]
            for name, split in raw.items():
                self._check_ratings_are_numbers(name, split)
                pairs = [
                    (text, rating_to_label(r, self.label_scheme, self.neutral_threshold))
                    for text, r in zip(
                        split[self.text_column], split[self.rating_column], strict=True
                    )
                ]
                pairs = [(t, y) for t, y in pairs if y is not None]
                texts[name], labels[name] = [t for t, _ in pairs], [y for _, y in pairs]
        else:
            feature = raw["train"].features[self.label_column]
            if isinstance(feature, ClassLabel):
                self.class_names = list(feature.names)
                self._check_label_range(raw)
            else:
                values = {v for split in raw.values() for v in split[self.label_column]}
                self.class_names = [str(v) for v in sorted(values)]
            index = {name: i for i, name in enumerate(self.class_names)}
            for name, split in raw.items():
                texts[name] = [str(t) for t in split[self.text_column]]
                labels[name] = [
                    v if isinstance(feature, ClassLabel) else index[str(v)]
                    for v in split[self.label_column]
                ]
        for name, values in texts.items():
            if not values:
                raise DataError(f"the '{name}' split has no examples left after labelling")
        return texts, labels

    def _check_label_range(self, raw: DatasetDict) -> None:
        """Class ids outside the class list (-1 = unlabelled in hub datasets) would index
        past the output layer mid-training; name them here."""
        n = len(self.class_names)
        for name, split in raw.items():
            bad = sorted({v for v in split[self.label_column] if not 0 <= v < n})
            if bad:
                raise DataError(
                    f"labels {bad[:5]} in the '{name}' split (data.label_column="
                    f"'{self.label_column}') are outside the class set {self.class_names} "
                    f"(ids 0..{n - 1}): drop those rows (-1 marks unlabelled) or fix the labels"
                )

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self._load()
        self.keep_examples()

    def split_loader(self, split: str, train: bool) -> DataLoader:
        return self.dataloader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=train,
            collate_fn=ClassificationCollator(self.pad_id),
        )

    def batch(self, split: str, count: int) -> dict[str, Tensor]:
        collate = ClassificationCollator(self.pad_id)
        return collate(first_examples(self.splits[split], count))
