"""TweetsDataModule: labels from ratings, local files with configurable columns, dynamic padding,
and clear errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.data.collate import ClassificationCollator, pad_sequences
from attnlab.data.sources import SPLITS, load_splits
from attnlab.data.tweets import LABEL_SCHEMES, TweetsDataModule, rating_to_label
from attnlab.errors import DataError

BERT = {"vocab": "bert-base-uncased", "max_length": 64}  # no tokenizer training: fast


def _embedded(tmp_path: Path, **kwargs) -> TweetsDataModule:
    options = {
        "source": {"embedded": "tweets.tsv.gz"},
        "rating_column": "rating",
        "label_column": None,
        "tokenizer": BERT,
        "cache_dir": str(tmp_path),
    }
    return TweetsDataModule(**(options | kwargs))


@pytest.mark.parametrize(
    ("rating", "ternary", "binary"),
    [(-2.0, 0, 0), (-0.51, 0, 0), (-0.5, 1, None), (0.0, 1, None), (0.5, 1, None), (0.6, 2, 1)],
)
def test_rating_to_label(rating: float, ternary: int, binary: int | None) -> None:
    assert rating_to_label(rating, "ternary", 0.5) == ternary
    assert rating_to_label(rating, "binary", 0.5) == binary


@pytest.mark.parametrize("scheme", ["ternary", "binary"])
@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_labels_follow_ratings_and_threshold(tmp_path: Path, scheme: str, threshold: float) -> None:
    datamodule = _embedded(tmp_path, label_scheme=scheme, neutral_threshold=threshold)
    datamodule.setup("fit")
    assert datamodule.class_names == LABEL_SCHEMES[scheme]
    assert datamodule.num_classes == len(LABEL_SCHEMES[scheme])
    raw = load_splits(embedded="tweets.tsv.gz")
    for split in SPLITS:
        rows = list(zip(raw[split]["text"], raw[split]["rating"], strict=True))
        if scheme == "binary":  # the neutral band is dropped
            rows = [(t, r) for t, r in rows if abs(r) > threshold]
        expected = [
            (len(LABEL_SCHEMES[scheme]) - 1) if r > threshold else 0 if r < -threshold else 1
            for _, r in rows
        ]
        labels = [y for _, y in datamodule.splits[split]]
        assert datamodule.texts[split] == [t for t, _ in rows]
        assert labels == expected
        if scheme == "ternary":  # nothing dropped: the committed sizes
            assert len(labels) == {"train": 3360, "validation": 420, "test": 420}[split]
        assert set(labels) == set(range(len(LABEL_SCHEMES[scheme])))


def test_binary_keeps_fewer_tweets_than_ternary(tmp_path: Path) -> None:
    ternary, binary = _embedded(tmp_path), _embedded(tmp_path, label_scheme="binary")
    ternary.setup(), binary.setup()
    for split in SPLITS:
        neutral = sum(1 for _, y in ternary.splits[split] if y == 1)
        assert neutral > 0 and len(binary.splits[split]) == len(ternary.splits[split]) - neutral


def test_model_sizes_are_known_before_setup(tmp_path: Path) -> None:
    datamodule = _embedded(tmp_path)
    assert (datamodule.vocab_size, datamodule.pad_id, datamodule.num_classes) == (30522, 0, 3)


def test_batches_are_padded_to_their_longest(tmp_path: Path) -> None:
    datamodule = _embedded(tmp_path, batch_size=16)
    datamodule.setup("fit")
    widths = set()
    for batch in list(datamodule.val_dataloader())[:5]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.shape == mask.shape and mask.dtype == torch.bool
        lengths = mask.sum(1)
        assert ids.shape[1] == int(lengths.max())  # padded to the batch's longest, no more
        assert torch.equal(mask, torch.arange(ids.shape[1])[None, :] < lengths[:, None])
        assert (ids[~mask] == datamodule.pad_id).all() and (ids[mask] != datamodule.pad_id).all()
        assert batch["labels"].shape == (ids.shape[0],)
        widths.add(ids.shape[1])
    assert len(widths) > 1  # dynamic: batch widths differ


def test_collator_pads_and_masks() -> None:
    ids, mask = pad_sequences([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [False, False, False]]
    batch = ClassificationCollator(pad_id=9)([([1, 2], 1), ([3], 0)])
    assert batch["input_ids"].tolist() == [[1, 2], [3, 9]]
    assert batch["labels"].tolist() == [1, 0]


def test_max_length_truncates(tmp_path: Path) -> None:
    datamodule = _embedded(tmp_path, tokenizer=BERT | {"max_length": 8})
    datamodule.setup()
    assert max(len(ids) for ids, _ in datamodule.splits["train"]) == 8


def _local(tmp_path: Path, frame: pd.DataFrame, suffix: str, **kwargs) -> TweetsDataModule:
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    options = {
        "source": {"files": {"train": str(path), "validation": str(path), "test": str(path)}},
        "text_column": "body",
        "label_column": "mood",
        "rating_column": None,
        "tokenizer": {"vocab_size": 200, "min_frequency": 1, "max_length": 16},
        "cache_dir": str(tmp_path / "cache"),
    }
    return TweetsDataModule(**(options | kwargs))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files_with_string_labels(tmp_path: Path, suffix: str) -> None:
    moods = ["sad", "happy", "meh", "happy"] * 5
    frame = pd.DataFrame({"body": [f"I feel {m} today {i}" for i, m in enumerate(moods)]})
    frame["mood"] = moods
    datamodule = _local(tmp_path, frame, suffix)
    datamodule.setup()
    assert datamodule.class_names == ["happy", "meh", "sad"]
    labels = [datamodule.class_names[y] for _, y in datamodule.splits["train"]]
    assert labels == moods
    assert datamodule.texts["test"] == frame["body"].tolist()


def test_local_files_with_int_labels(tmp_path: Path) -> None:
    stars = [1, 5, 3, 5, 1, 3, 3] * 3
    frame = pd.DataFrame({"body": [f"review {i} of {s} stars" for i, s in enumerate(stars)]})
    frame["mood"] = stars
    datamodule = _local(tmp_path, frame, ".csv")
    datamodule.setup()
    assert datamodule.class_names == ["1", "3", "5"]
    assert [y for _, y in datamodule.splits["validation"]] == [[1, 3, 5].index(s) for s in stars]


def test_local_file_without_splits_is_carved(tmp_path: Path) -> None:
    frame = pd.DataFrame({"body": [f"text {i}" for i in range(50)], "mood": ["a", "b"] * 25})
    path = tmp_path / "only_train.csv"
    frame.to_csv(path, index=False)
    datamodule = _local(tmp_path, frame, ".csv", source={"files": str(path)}, seed=7)
    datamodule.setup()
    sizes = {name: len(datamodule.splits[name]) for name in SPLITS}
    assert sizes == {"train": 40, "validation": 5, "test": 5}
    texts = [t for name in SPLITS for t in datamodule.texts[name]]
    assert sorted(texts) == sorted(frame["body"])  # a partition of the file


@pytest.mark.parametrize("key", ["text_column", "label_column"])
def test_missing_column_names_the_config_key(tmp_path: Path, key: str) -> None:
    frame = pd.DataFrame({"body": ["a b", "c d"] * 5, "mood": ["x", "y"] * 5})
    datamodule = _local(tmp_path, frame, ".csv", **{key: "nope"})
    with pytest.raises(DataError) as error:
        datamodule.setup()
    message = str(error.value)
    assert "'nope'" in message and f"data.{key}" in message
    assert "body" in message and "mood" in message  # the columns there are


def test_missing_rating_column_names_the_config_key(tmp_path: Path) -> None:
    datamodule = _embedded(tmp_path, rating_column="stars")
    with pytest.raises(DataError, match=r"'stars' \(data\.rating_column\) not found.*rating"):
        datamodule.setup()


def test_unknown_label_scheme_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        _embedded(tmp_path, label_scheme="quinary")
    message = str(error.value)
    assert "data.label_scheme" in message and "quinary" in message
    assert all(scheme in message for scheme in LABEL_SCHEMES)


def test_no_label_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.label_column"):
        _embedded(tmp_path, rating_column=None, label_column=None)


def test_empty_csv_through_the_datamodule(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("body,mood\n")
    datamodule = _local(tmp_path, pd.DataFrame(), ".csv", source={"files": str(path)})
    with pytest.raises(DataError, match=r"empty"):
        datamodule.setup()


def test_missing_data_file_through_the_datamodule(tmp_path: Path) -> None:
    missing = tmp_path / "gone.tsv"
    datamodule = _local(tmp_path, pd.DataFrame(), ".csv", source={"files": str(missing)})
    with pytest.raises(DataError, match=r"data file not found: '.*gone\.tsv' \(files\.train\)"):
        datamodule.setup()


def test_state_dict_restores_tokenizer_and_classes(tmp_path: Path) -> None:
    trained = _embedded(tmp_path, label_scheme="binary")
    trained.setup()
    restored = TweetsDataModule(
        source={"embedded": "does-not-matter.tsv"}, label_column="label", tokenizer=BERT
    )
    restored.load_state_dict(trained.state_dict())
    assert restored.class_names == ["negative", "positive"]
    text = ["What a GREAT day!!"]
    encoded = restored.interface.encode(text)["input_ids"]
    assert torch.equal(encoded, trained.interface.encode(text)["input_ids"])


def test_loaded_tweets_are_packed_token_ids(tmp_path: Path) -> None:
    datamodule = _embedded(tmp_path)
    datamodule.setup()
    train = datamodule.splits["train"]
    assert train.sequences.tokens.dtype == np.uint16  # 8,000 ids fit two bytes
    ids, label = train[0]
    assert ids == datamodule.interface.encode_ids([datamodule.texts["train"][0]])[0]
    assert isinstance(label, int) and label == train.labels[0]
