"""Data sources: the embedded tweets' committed splits, local files of every format, carved
splits, and errors that name the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attnlab.data.sources import (
    SPLITS,
    DataError,
    ensure_splits,
    load_files,
    load_splits,
    require_columns,
)

EMBEDDED_SIZES = {"train": 3360, "validation": 420, "test": 420}


def _frame(n: int = 30, label: str = "sentiment", labels=("neg", "pos", "neu")) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": range(n),
            "sentence": [f"tweet number {i} is {labels[i % len(labels)]}" for i in range(n)],
            label: [labels[i % len(labels)] for i in range(n)],
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as csv/tsv/jsonl/parquet, by the suffix of ``path``."""
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise AssertionError(suffix)
    return path


def test_embedded_tweets_have_the_committed_disjoint_splits() -> None:
    splits = load_splits(embedded="tweets.tsv.gz")
    assert {name: len(splits[name]) for name in SPLITS} == EMBEDDED_SIZES
    ids = {name: set(splits[name]["id"]) for name in SPLITS}
    assert all(len(ids[name]) == EMBEDDED_SIZES[name] for name in SPLITS)  # no duplicates
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert set(splits["train"].column_names) >= {"id", "rating", "text"}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files_of_each_format_load_per_split(tmp_path: Path, suffix: str) -> None:
    files = {
        "train": write(_frame(30), tmp_path / f"train{suffix}"),
        "val": write(_frame(6), tmp_path / f"val{suffix}"),  # alias of validation
        "test": write(_frame(9), tmp_path / f"test{suffix}"),
    }
    splits = load_splits(files={k: str(v) for k, v in files.items()})
    assert list(splits) == list(SPLITS)
    assert [len(splits[name]) for name in SPLITS] == [30, 6, 9]
    assert splits["train"]["sentence"] == _frame(30)["sentence"].tolist()
    assert splits["test"]["sentiment"] == _frame(9)["sentiment"].tolist()


def test_only_train_file_gets_seeded_validation_and_test(tmp_path: Path) -> None:
    path = str(write(_frame(100), tmp_path / "all.csv"))

    def carve(seed: int) -> dict[str, list[int]]:
        splits = load_splits(files=path, seed=seed, val_fraction=0.2, test_fraction=0.1)
        return {name: splits[name]["uid"] for name in SPLITS}

    first, again, other = carve(1), carve(1), carve(2)
    assert first == again  # same seed, same split
    assert first != other  # the seed decides
    assert len(first["test"]) == 10  # test_fraction of all
    assert len(first["validation"]) == 18  # val_fraction of what test left
    assert len(first["train"]) == 72
    everything = [uid for name in SPLITS for uid in first[name]]
    assert sorted(everything) == list(range(100))  # disjoint, and nothing lost


def test_missing_split_with_no_fraction_says_which(tmp_path: Path) -> None:
    path = write(_frame(20), tmp_path / "all.csv")
    with pytest.raises(DataError, match=r"no 'test' split: set a test fraction"):
        ensure_splits(load_files(path), seed=0, val_fraction=0.1, test_fraction=0)


def test_missing_data_file_names_the_path_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(DataError) as error:
        load_splits(files={"train": str(write(_frame(), tmp_path / "t.csv")), "test": missing})
    message = str(error.value)
    assert "not found" in message and str(missing) in message and "files.test" in message


def test_unknown_file_format_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"cannot tell the format.*\.csv.*\.parquet"):
        load_files(path)


def test_empty_csv_with_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("sentence,sentiment\n")
    with pytest.raises(DataError) as error:
        load_splits(files=str(path))
    message = str(error.value)
    assert str(path) in message and "empty" in message


def test_missing_column_lists_columns_and_names_the_key(tmp_path: Path) -> None:
    dataset = load_files(write(_frame(), tmp_path / "t.csv"))["train"]
    require_columns(dataset, {"text_column": "sentence", "label_column": None})  # fine
    with pytest.raises(DataError) as error:
        require_columns(dataset, {"text_column": "text"})
    message = str(error.value)
    assert "'text'" in message and "data.text_column" in message
    for column in ("uid", "sentence", "sentiment"):
        assert column in message
