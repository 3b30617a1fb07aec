"""Tab-separated sentence pairs: Tatoeba/Anki ``.txt`` (no header) and ``.tsv`` (a header).

Lines are split on tabs: quote characters are text (verses and Tatoeba sentences contain
them), not CSV quoting. Rows go to Arrow in chunks, in memory or into a memory-mapped file, so
the raw text of a corpus of millions of pairs costs disk, not memory.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets
from datasets.arrow_writer import ArrowWriter

from attnlab.data.sources import EMBEDDED_DIR, SPLIT_ALIASES, DataError, not_utf8

TAB_SEPARATED = (".txt", ".tsv")
READ_CHUNK = 100_000  # lines of a .txt/.tsv gathered as Python lists before they go to Arrow


def suffix(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2", ".xz", ".zst")]
    return suffixes[-1] if suffixes else ""


def read_tab_separated(
    path: str | Path, columns: Sequence[str] | None = None, into: Path | None = None
) -> Dataset:
    """Rows of a tab-separated file. Without ``columns`` the first line names them (.tsv) and
    every row has exactly that many fields; with them (Tatoeba .txt: source, target) every line
    needs at least that many and extra fields (the attribution) are ignored. With ``into`` (a
    file), the rows are written there as Arrow and memory-mapped: the raw text of a corpus of
    millions of pairs then costs disk, not memory."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file not found: '{path}'; check the path in data.source")
    opener = gzip.open if path.suffix == ".gz" else open
    table = _TableWriter(into)
    rows: list[list[str]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            if columns is None:
                header = f.readline().rstrip("\r\n")
                if not header:
                    raise DataError(f"'{path}' is empty; a .tsv needs a header row and data rows")
                columns, exact, first = header.split("\t"), True, 2
            else:
                exact, first = False, 1
            for number, line in enumerate(f, start=first):
                rows.append(_fields(line.rstrip("\r\n"), number, path, columns, exact))
                if len(rows) == READ_CHUNK:  # into Arrow: bounded Python lists
                    table.write(rows, columns)
                    rows = []
    except UnicodeDecodeError as error:
        raise not_utf8(str(path), error) from error
    if rows:
        table.write(rows, columns)
    if not table.rows:
        raise DataError(f"'{path}' has no data rows; add sentence pairs to it")
    return table.dataset()


class _TableWriter:
    """Rows gathered into Arrow: in memory, or into an Arrow file that is then memory-mapped."""

    def __init__(self, into: Path | None) -> None:
        self.into = into
        self.writer = ArrowWriter(path=str(into)) if into else None
        self.chunks: list[Dataset] = []
        self.rows = 0

    def write(self, rows: list[list[str]], columns: Sequence[str]) -> None:
        batch = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
        if self.writer is None:
            self.chunks.append(Dataset.from_dict(batch))
        else:
            self.writer.write_batch(batch)
        self.rows += len(rows)

    def dataset(self) -> Dataset:
        if self.writer is not None:
            self.writer.finalize()
            self.writer.close()
            return Dataset.from_file(str(self.into))
        return concatenate_datasets(self.chunks) if len(self.chunks) > 1 else self.chunks[0]


def _fields(line: str, number: int, path: Path, columns: Sequence[str], exact: bool) -> list[str]:
    """One line's fields, or the error naming the line: empty, or the wrong field count."""
    if not line.strip():
        raise DataError(f"line {number} of '{path}' is empty; remove empty lines")
    fields = line.split("\t")
    if len(fields) < len(columns) or (exact and len(fields) != len(columns)):
        raise DataError(
            f"line {number} of '{path}' has {len(fields)} tab-separated fields, expected "
            f"{len(columns)} ({' <TAB> '.join(columns)}): is a side missing or a tab stray?"
        )
    return fields[: len(columns)]


def tab_separated_splits(
    source: Mapping[str, Any], txt_columns: Sequence[str], scratch: Path | None
) -> dict[str, Dataset] | None:
    """A source's split files read by ``read_tab_separated`` when all are .txt/.tsv (``.txt``
    rows as ``txt_columns``), else None; with a ``scratch`` folder, as memory-mapped Arrow
    files there."""
    if source.get("hub"):
        return None
    files = source.get("files")
    if not files and source.get("embedded"):
        files = EMBEDDED_DIR / source["embedded"]
    if not files:
        return None
    if isinstance(files, (str, Path)):
        files = {"train": files}
    paths = {SPLIT_ALIASES.get(k, k): Path(v) for k, v in files.items() if v}
    if not all(suffix(p) in TAB_SEPARATED for p in paths.values()):
        return None
    return {
        split: read_tab_separated(
            path,
            txt_columns if suffix(path) == ".txt" else None,
            scratch / f"{split}.arrow" if scratch else None,
        )
        for split, path in paths.items()
    }
