"""Where examples come from: a hub dataset by name, local files, or the embedded default.

Every DataModule reads through ``load_splits`` so the three sources behave the same: the result
is a ``datasets.DatasetDict`` with exactly the splits ``train``, ``validation`` and ``test``;
splits the source lacks are carved from ``train`` with a seeded shuffle.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from attnlab.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict, IterableDataset

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}
FILE_FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".txt": ("text", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}


@functools.cache
def hf_datasets() -> ModuleType:
    """The ``datasets`` library, imported when a source is first read: a run whose token cache
    exists never reads one, and saves its imports (about 80 MB and 0.25 s)."""
    import datasets

    datasets.disable_progress_bars()  # one line per split and filter is noise in training logs
    return datasets


def _file_format(path: Path) -> tuple[str, dict]:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2", ".xz", ".zst")]
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in FILE_FORMATS:
        raise DataError(
            f"cannot tell the format of '{path}': use one of {', '.join(FILE_FORMATS)} "
            "(optionally compressed .gz/.bz2/.xz)"
        )
    return FILE_FORMATS[suffix]


def local_files(files: str | Path | Mapping[str, str | Path | None]) -> dict[str, Path]:
    """{split: path} of one path (all train) or {split: path}, each checked to exist."""
    if isinstance(files, (str, Path)):
        files = {"train": files}
    files = {SPLIT_ALIASES.get(k, k): Path(v).expanduser() for k, v in files.items() if v}
    if "train" not in files:
        raise DataError(f"local files {dict(files)} have no 'train' entry; give files.train=PATH")
    for split, path in files.items():
        if split not in SPLITS:
            raise DataError(f"unknown split '{split}' in files; use {', '.join(SPLITS)}")
        if not path.is_file():
            raise DataError(f"data file not found: '{path}' (files.{split}); check the path")
    return files


def load_files(files: str | Path | Mapping[str, str | Path | None]) -> DatasetDict:
    """Local csv/tsv/jsonl/json/parquet/txt files: one path (all train) or {split: path}."""
    files = local_files(files)
    formats = [_file_format(p) for p in files.values()]
    if any(f != formats[0] for f in formats):
        raise DataError(f"files of mixed formats {[f[0] for f in formats]}: use one format")
    builder, kwargs = formats[0]
    data_files = {split: str(path) for split, path in files.items()}
    try:
        return hf_datasets().load_dataset(builder, data_files=data_files, **kwargs)
    except Exception as error:  # datasets raises several types for empty or malformed files
        if (decode := _decode_error(error)) is not None:
            raise not_utf8(", ".join(data_files.values()), decode) from error
        raise DataError(
            f"could not load the data files {data_files}: {error}. Is one of them empty (no rows, "
            f"or a header only)? Add examples to it, or check that it is valid {builder}"
        ) from error


def not_utf8(where: str, error: UnicodeDecodeError) -> DataError:
    """The error for a data file that is not UTF-8 text (latin-1 or Windows exports, binaries)."""
    return DataError(
        f"'{where}' is not UTF-8 text ({error.reason}: byte {error.object[error.start]:#04x} at "
        f"offset {error.start}): re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"
    )


def _decode_error(error: BaseException | None) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError behind a loader's wrapped exception, if that is what it was."""
    while error is not None and not isinstance(error, UnicodeDecodeError):
        error = error.__cause__ or error.__context__
    return error


def load_hub(name: str, config: str | None = None, revision: str | None = None) -> DatasetDict:
    """A dataset from the Hugging Face hub (needs internet or a warm cache)."""
    try:
        loaded = hf_datasets().load_dataset(name, config, revision=revision)
    except Exception as error:  # the hub raises many types; all mean the same to the user
        raise DataError(
            f"could not load hub dataset '{name}' (config {config!r}): {error}. Offline? "
            "Use local files (source.files=PATH) or the embedded default (source.hub=null)."
        ) from error
    return hf_datasets().DatasetDict({SPLIT_ALIASES.get(k, k): v for k, v in loaded.items()})


def split_by_column(dataset: Dataset, column: str = "split") -> DatasetDict:
    """Split a table whose ``column`` names each row's split (the embedded files do)."""
    names = dataset.unique(column)
    return hf_datasets().DatasetDict(
        {
            SPLIT_ALIASES.get(n, n): dataset.filter(lambda s, n=n: s == n, input_columns=column)
            for n in names
        }
    )


FRACTION_KEYS = {"test": "test_fraction", "validation": "val_fraction"}


def ensure_splits(
    splits: DatasetDict, seed: int, val_fraction: float, test_fraction: float
) -> DatasetDict:
    """Give ``splits`` exactly train/validation/test, carving missing ones from train."""
    if "train" not in splits:
        raise DataError(f"the source has no 'train' split (it has {list(splits)})")
    train = splits["train"]
    out = {}
    for name, fraction in (("test", test_fraction), ("validation", val_fraction)):
        if name in splits:
            out[name] = splits[name]
            continue
        if not 0 < fraction < 1:
            raise DataError(f"the source has no '{name}' split: set a {name} fraction in (0, 1)")
        try:
            parts = train.train_test_split(test_size=fraction, seed=seed)
        except ValueError as error:  # too few rows to leave both sides non-empty
            raise DataError(
                f"the train data has {len(train)} rows, too few to carve a {name} split "
                f"(data.{FRACTION_KEYS[name]}={fraction}) from it: add rows, or give the split "
                f"as its own file (source.files.{name}=PATH)"
            ) from error
        train, out[name] = parts["train"], parts["test"]
    out["train"] = train
    for name in SPLITS:
        if len(out[name]) == 0:
            raise DataError(f"the '{name}' split is empty: add data or change the split fractions")
    return hf_datasets().DatasetDict({name: out[name] for name in SPLITS})


def _file_stamp(path: Path) -> dict[str, str | int]:
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def source_fingerprint(
    hub: str | None = None,
    hub_config: str | None = None,
    hub_revision: str | None = None,
    files: str | Mapping[str, str | None] | None = None,
    embedded: str | None = None,
) -> dict[str, object]:
    """What identifies the source's content without reading it (keys of derived caches): a
    hub dataset by name, config and revision; local and embedded files by path, size, mtime."""
    if hub:
        return {"hub": hub, "config": hub_config, "revision": hub_revision}
    if files:
        return {split: _file_stamp(path) for split, path in local_files(files).items()}
    if embedded:
        return {"embedded": _file_stamp(EMBEDDED_DIR / embedded)}
    raise DataError("no data source: set source.hub, source.files or source.embedded")


def load_splits(
    hub: str | None = None,
    hub_config: str | None = None,
    hub_revision: str | None = None,
    files: str | Mapping[str, str | None] | None = None,
    embedded: str | None = None,
    seed: int = 1234,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> DatasetDict:
    """train/validation/test from the first source given: hub, then files, then embedded."""
    if hub:
        splits = load_hub(hub, hub_config, hub_revision)
    elif files:
        splits = load_files(files)
    elif embedded:
        table = load_files(EMBEDDED_DIR / embedded)["train"]
        splits = split_by_column(table) if "split" in table.column_names else {"train": table}
        splits = hf_datasets().DatasetDict(splits)
    else:
        raise DataError("no data source: set source.hub, source.files or source.embedded")
    return ensure_splits(splits, seed, val_fraction, test_fraction)


def stream_splits(
    hub: str | None = None,
    hub_config: str | None = None,
    hub_revision: str | None = None,
    files: str | Mapping[str, str | None] | None = None,
    embedded: str | None = None,
) -> dict[str, IterableDataset]:
    """train/validation/test of a hub dataset or local files as streams, read as iterated."""
    if hub:
        try:
            loaded = hf_datasets().load_dataset(
                hub, hub_config, revision=hub_revision, streaming=True
            )
        except Exception as error:  # the hub raises many types; all mean the same to the user
            raise DataError(
                f"could not stream hub dataset '{hub}' (config {hub_config!r}): {error}. Offline? "
                "Stream local files (source.files=PATH) instead"
            ) from error
    elif files:
        paths = local_files(files)
        builder, kwargs = _file_format(paths["train"])
        data_files = {split: str(path) for split, path in paths.items()}
        loaded = hf_datasets().load_dataset(
            builder, data_files=data_files, streaming=True, **kwargs
        )
    else:
        raise DataError(
            "source.streaming=true reads a hub dataset (source.hub) or local files (source.files);"
            " the embedded data is small: set source.streaming=false"
        )
    streams = {SPLIT_ALIASES.get(k, k): v for k, v in loaded.items()}
    for name in SPLITS:
        if name not in streams:
            raise DataError(
                f"the stream has no '{name}' split (it has {list(streams)}), and a stream cannot "
                f"be carved into splits: give source.files.{name}=PATH, or source.streaming=false"
            )
    return {name: streams[name] for name in SPLITS}


def require_columns(
    dataset: Dataset, columns: Mapping[str, str | None], headerless_fix: str = ""
) -> None:
    """Fail with the config key to change when a configured column is missing.

    When none of two or more is there and the table has exactly as many columns, its first row was
    most likely data read as the header: the message says so (one behaviour for every
    DataModule: a table without a header row is stopped, never guessed at).
    """
    wanted = {key: column for key, column in columns.items() if column is not None}
    missing = {key: column for key, column in wanted.items() if column not in dataset.column_names}
    if not missing:
        return
    if len(missing) == len(wanted) == len(dataset.column_names) >= 2:
        raise DataError(
            f"the file seems to have no header row: its first row {dataset.column_names} was "
            f"read as the column names. Add a first line naming the columns "
            f"({', '.join(wanted.values())}, in the file's order){headerless_fix}, or set "
            f"{', '.join(f'data.{key}' for key in wanted)} to the names the file uses"
        )
    key, column = next(iter(missing.items()))
    raise DataError(
        f"column '{column}' (data.{key}) not found; the data has columns "
        f"{dataset.column_names}: set data.{key} to one of them"
    )


def split_by_group(
    table: Dataset, column: str, seed: int, val_fraction: float, test_fraction: float
) -> DatasetDict:
    """Whole groups (e.g. books) per split: the groups are shuffled with ``seed``, then test and
    validation take groups in turn until each holds its fraction of the pairs."""
    from datasets import DatasetDict

    values = table[column]
    counts = Counter(values)
    groups = sorted(counts)
    random.Random(seed).shuffle(groups)
    wanted = {"test": test_fraction * len(table), "validation": val_fraction * len(table)}
    held = dict.fromkeys(SPLITS, 0)
    assignment = {}
    for group in groups:
        split = next((s for s in wanted if held[s] < wanted[s]), "train")
        assignment[group] = split
        held[split] += counts[group]
    splits = {}
    for split in SPLITS:
        keep = [i for i, g in enumerate(values) if assignment[g] == split]
        if not keep:
            raise DataError(
                f"split_by='{column}' left the '{split}' split empty ({len(groups)} groups): "
                "use split_by=example or change the split fractions"
            )
        splits[split] = table.select(keep)
    return DatasetDict(splits)
