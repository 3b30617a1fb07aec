"""Parallel sentences (source -> target) for translation, batched by length.

Sources (``source``), the first one set wins:

* ``hub``: e.g. ``opus_books`` with ``hub_config: en-fr``, whose ``translation`` column holds
  ``{"en": ..., "fr": ...}`` dicts; ``source_lang``/``target_lang`` pick the two sides.
* ``files``: a path or ``{train, validation, test}`` paths. ``.txt`` is the Tatoeba/Anki format
  (``eng-fra.txt``): ``source<TAB>target[<TAB>attribution]`` per line, no header. ``.tsv`` has a
  header row naming the columns. ``.jsonl``/``.json``/``.csv``/``.parquet`` go through
  ``attnlab.data.sources``. Sides are read from ``source_column``/``target_column`` (default:
  the language codes), or from ``translation_column`` dicts when the data has that column.
* ``embedded``: ``bible_en_fr.tsv.gz``, 31,102 verse pairs, World English Bible -> Louis Segond
  1910, both public domain (see ``embedded/bible_en_fr.NOTICE.md``).

Tab-separated files are read as lines split on tabs: quote characters are text (verses and
Tatoeba sentences contain them), not CSV quoting.

Splits are seeded. ``split_by: example`` draws every pair on its own (for the Bible, a
verse-level split: neighbouring verses of a chapter can land in train and test).
``split_by: <column>`` (e.g. ``book``) pools whatever splits the source has and keeps all pairs
sharing that column's value in one split: whole books held out, a harder out-of-domain test.
Then pairs whose source has fewer than ``min_words`` or more than ``max_words`` words are
dropped from every split (default 3-30 English words).

Each side gets its own WordPiece tokenizer, trained on the train split (cached by content).
Targets are ``[CLS] y_1 .. y_n [SEP]``: the trained vocabulary's ``[CLS]`` serves as BOS and
``[SEP]`` as EOS, so no special tokens are added. BLEU compares text in the target
tokenizer's normal form (for the default settings: lowercase, accents stripped, punctuation
split off): ``references`` are normalised that way and ``decode_targets`` joins WordPiece pieces
back into the same form.
"""

from __future__ import annotations

import gzip
import math
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from datasets.arrow_writer import ArrowWriter
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from attnlab.data.array_cache import CacheWriter, cached_arrays, keyed_folder
from attnlab.data.base import SplitDataModule
from attnlab.data.collate import pad_sequences
from attnlab.data.packed import ENCODE_BATCH, PackedBuilder, PackedSequences, PackedTexts
from attnlab.data.sources import (
    EMBEDDED_DIR,
    SPLIT_ALIASES,
    SPLITS,
    DataError,
    ensure_splits,
    load_splits,
    not_utf8,
    require_columns,
    source_fingerprint,
)
from attnlab.data.token_cache import token_dtype, tokenizer_digest
from attnlab.data.tokenization import (
    DEFAULT_MAX_LENGTH,
    TextTokenizer,
    build_tokenizer,
    tokenizer_settings,
)

BOS, EOS = "[CLS]", "[SEP]"
TOKENIZERS = ("src_tokenizer", "tgt_tokenizer")  # state_dict keys and pair-cache file stems
TAB_SEPARATED = (".txt", ".tsv")
READ_CHUNK = 100_000  # lines of a .txt/.tsv gathered as Python lists before they go to Arrow


def _suffix(path: Path) -> str:
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


def split_by_group(
    table: Dataset, column: str, seed: int, val_fraction: float, test_fraction: float
) -> DatasetDict:
    """Whole groups (e.g. books) per split: the groups are shuffled with ``seed``, then test and
    validation take groups in turn until each holds its fraction of the pairs."""
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


def join_pieces(tokens: Sequence[str]) -> str:
    """WordPiece tokens -> words separated by spaces ('##' pieces glued to the previous one)."""
    words: list[str] = []
    for token in tokens:
        if token.startswith("##") and words:
            words[-1] += token[2:]
        else:
            words.append(token)
    return " ".join(words)


def normal_form(tokenizer: TextTokenizer, text: str) -> str:
    """``text`` normalised and pre-tokenised as the tokenizer sees it, words joined by spaces."""
    inner = tokenizer.tokenizer
    if inner.normalizer is not None:
        text = inner.normalizer.normalize_str(text)
    if inner.pre_tokenizer is not None:
        return " ".join(word for word, _ in inner.pre_tokenizer.pre_tokenize_str(text))
    return " ".join(text.split())


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of examples of similar length: little padding, few wasted RNN steps.

    With ``shuffle``, every epoch shuffles the examples, sorts each pool of ``pool_batches``
    batches by length, cuts it into batches and shuffles the batches (seeded by ``seed`` and the
    epoch). Without, the batches follow the examples sorted by length (for evaluation).
    The order is a function of the epoch alone (``set_epoch``, as Lightning calls each epoch),
    so a resumed run can replay an epoch's order and skip what it has seen.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"data.batch_size={batch_size} must be >= 1")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            yield from self._cut(np.argsort(self.lengths, kind="stable"))
            return
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            batches.extend(self._cut(pool[np.argsort(self.lengths[pool], kind="stable")]))
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        order = order.tolist()
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]


class TranslationCollator:
    """Examples -> padded source and target ids with masks, plus the texts for BLEU and plots.

    ``tgt_ids`` is [BOS] y [EOS] padded: the decoder reads ``tgt_ids[:, :-1]`` and is trained to
    predict ``tgt_ids[:, 1:]``.
    """

    def __init__(self, src_pad_id: int, tgt_pad_id: int) -> None:
        self.src_pad_id = src_pad_id
        self.tgt_pad_id = tgt_pad_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        src_ids, src_mask = pad_sequences([e["src_ids"] for e in examples], self.src_pad_id)
        tgt_ids, tgt_mask = pad_sequences([e["tgt_ids"] for e in examples], self.tgt_pad_id)
        batch = {"src_ids": src_ids, "src_mask": src_mask, "tgt_ids": tgt_ids, "tgt_mask": tgt_mask}
        if "source" in examples[0]:  # evaluation splits: for BLEU and the plots
            batch["source"] = [e["source"] for e in examples]
            batch["reference"] = [e["reference"] for e in examples]
        return batch


class TextPairs:
    """(source, reference) texts of an evaluation split, packed as UTF-8 bytes."""

    def __init__(self, sources: PackedTexts, references: PackedTexts) -> None:
        self.sources, self.references = sources, references

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[str, str]:
        return self.sources[index], self.references[index]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return (self[i] for i in range(len(self)))


class TranslationPairs(TorchDataset):
    """A split's pairs as packed token ids; evaluation splits also keep the source text and the
    reference in BLEU's normal form. Training pairs keep no text: a 10M-pair corpus costs its
    token ids (2 bytes each with vocabularies below 65,536) and 16 bytes of offsets a pair,
    memory-mapped from the pair cache."""

    def __init__(
        self,
        sources: PackedSequences,
        targets: PackedSequences,
        bos_id: int,
        eos_id: int,
        texts: TextPairs | None = None,
    ) -> None:
        self.sources, self.targets = sources, targets
        self.bos_id, self.eos_id = bos_id, eos_id
        self.texts = texts

    @classmethod
    def from_cache(
        cls, arrays: dict[str, np.ndarray], split: str, bos_id: int, eos_id: int
    ) -> TranslationPairs:
        """The split ``ParallelCorpusDataModule._write_split`` wrote into the pair cache."""
        texts = None
        if f"{split}.source.tokens" in arrays:
            texts = TextPairs(
                PackedTexts(PackedSequences.from_cache(arrays, f"{split}.source")),
                PackedTexts(PackedSequences.from_cache(arrays, f"{split}.reference")),
            )
        return cls(
            PackedSequences.from_cache(arrays, f"{split}.src"),
            PackedSequences.from_cache(arrays, f"{split}.tgt"),
            bos_id,
            eos_id,
            texts,
        )

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = {
            "src_ids": self.sources[index],
            "tgt_ids": [self.bos_id, *self.targets[index], self.eos_id],
        }
        if self.texts is not None:
            example["source"], example["reference"] = self.texts[index]
        return example

    @property
    def target_lengths(self) -> np.ndarray:
        """Decoder steps per pair ([BOS] y [EOS]), for bucketing."""
        return self.targets.lengths + 2

    @property
    def nbytes(self) -> int:
        return self.sources.nbytes + self.targets.nbytes


class _Side:
    """One side (0: source, 1: target) of a split's filtered pairs, re-read from the table on
    every pass (the tokenizer's hash, then its training), never held as one list."""

    def __init__(self, chunks: Callable[[], Iterator[list[tuple[str, str]]]], side: int) -> None:
        self.chunks, self.side = chunks, side
        self.count: int | None = None  # counted on first use (a given vocabulary never asks)

    def __len__(self) -> int:
        if self.count is None:
            self.count = sum(len(chunk) for chunk in self.chunks())
        return self.count

    def __iter__(self) -> Iterator[str]:
        return (pair[self.side] for chunk in self.chunks() for pair in chunk)


class ParallelCorpusDataModule(SplitDataModule):
    """Sentence pairs from a hub dataset, local files or the embedded Bible verses.

    ``src_vocab_size``, ``tgt_vocab_size``, ``src_pad_id``, ``tgt_pad_id``, ``bos_id`` and
    ``eos_id`` are ready on first access, before ``setup``, for ``${datamodule:...}`` in configs.
    """

    def __init__(
        self,
        source: Mapping[str, Any],
        source_lang: str = "en",
        target_lang: str = "fr",
        source_column: str | None = None,
        target_column: str | None = None,
        translation_column: str = "translation",
        split_by: str = "example",
        min_words: int = 3,
        max_words: int | None = 30,
        drop_empty: bool = False,
        src_tokenizer: Mapping[str, Any] | None = None,
        tgt_tokenizer: Mapping[str, Any] | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        pool_batches: int = 50,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_fraction: float = 0.05,
        test_fraction: float = 0.1,
        seed: int = 1234,
        cache_dir: str = "outputs/cache",
        verify_cache: bool = True,
    ) -> None:
        super().__init__()
        if max_words is not None and max_words < min_words:
            raise DataError(f"data.max_words={max_words} is below data.min_words={min_words}")
        self.source = dict(source)
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.source_column = source_column or source_lang
        self.target_column = target_column or target_lang
        self.translation_column = translation_column
        self.split_by = split_by
        self.min_words = min_words
        self.max_words = max_words
        self.drop_empty = drop_empty
        self.src_tokenizer_args = dict(src_tokenizer or {})
        self.tgt_tokenizer_args = dict(tgt_tokenizer or {})
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.pool_batches = pool_batches
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.verify_cache = verify_cache
        self.src_tokenizer: TextTokenizer | None = None
        self.tgt_tokenizer: TextTokenizer | None = None
        self.examples: dict[str, TranslationPairs] = {}

    # What the model needs, available before setup.
    @property
    def src_vocab_size(self) -> int:
        return self._ready().src_tokenizer.vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        return self._ready().tgt_tokenizer.vocab_size

    @property
    def src_pad_id(self) -> int:
        return self._ready().src_tokenizer.pad_id

    @property
    def tgt_pad_id(self) -> int:
        return self._ready().tgt_tokenizer.pad_id

    @property
    def bos_id(self) -> int:
        return self._ready().tgt_tokenizer.token_id(BOS)

    @property
    def eos_id(self) -> int:
        return self._ready().tgt_tokenizer.token_id(EOS)

    def _ready(self) -> ParallelCorpusDataModule:
        if self.tgt_tokenizer is None:
            self._load()
        return self

    # Loading.
    def _tab_separated(self, scratch: Path | None) -> dict[str, Dataset] | None:
        """The source read by ``read_tab_separated`` when it is .txt/.tsv, else None; with a
        ``scratch`` folder, as memory-mapped Arrow files there."""
        if self.source.get("hub"):
            return None
        files = self.source.get("files")
        if not files and self.source.get("embedded"):
            files = EMBEDDED_DIR / self.source["embedded"]
        if not files:
            return None
        if isinstance(files, (str, Path)):
            files = {"train": files}
        paths = {SPLIT_ALIASES.get(k, k): Path(v) for k, v in files.items() if v}
        if not all(_suffix(p) in TAB_SEPARATED for p in paths.values()):
            return None
        txt_columns = [self.source_column, self.target_column]
        return {
            split: read_tab_separated(
                path,
                txt_columns if _suffix(path) == ".txt" else None,
                scratch / f"{split}.arrow" if scratch else None,
            )
            for split, path in paths.items()
        }

    def _raw_splits(self, scratch: Path | None = None) -> DatasetDict:
        """The source's train/validation/test tables, before filtering; .txt/.tsv files are
        written as Arrow into ``scratch`` when given (else held in memory)."""
        fractions = {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
        tables = self._tab_separated(scratch)
        if tables is None:
            tables = load_splits(**self.source, seed=self.seed, **fractions)
        if self.split_by == "example":
            return ensure_splits(DatasetDict(tables), self.seed, **fractions)
        pooled = concatenate_datasets(list(tables.values()))
        require_columns(pooled, {"split_by": self.split_by})
        return split_by_group(pooled, self.split_by, self.seed, **fractions)

    def _check_sides(self, table: Dataset) -> None:
        """The configured languages (translation dicts) or columns are in the table."""
        if self.translation_column in table.column_names:
            first = table[0][self.translation_column] if len(table) else {}
            languages = sorted(first)
            for lang in (self.source_lang, self.target_lang):
                if lang not in languages:
                    raise DataError(
                        f"the '{self.translation_column}' column has languages {languages}, not "
                        f"'{lang}': set data.source_lang/data.target_lang to two of them, or "
                        f"choose the hub config of your pair (data.source.hub_config, now "
                        f"{self.source.get('hub_config')!r})"
                    )
            return
        require_columns(
            table,
            {"source_column": self.source_column, "target_column": self.target_column},
            headerless_fix=" or name the file .txt (read as source<TAB>target, no header)",
        )

    def _side_chunks(self, table: Dataset) -> Iterator[tuple[list[str], list[str]]]:
        """(sources, targets) of the table, ``ENCODE_BATCH`` rows at a time."""
        dicts = self.translation_column in table.column_names
        columns = [self.translation_column] if dicts else [self.source_column, self.target_column]
        for batch in table.select_columns(columns).iter(batch_size=ENCODE_BATCH):
            if dicts:
                pairs = batch[self.translation_column]
                yield [p[self.source_lang] for p in pairs], [p[self.target_lang] for p in pairs]
            else:
                yield batch[self.source_column], batch[self.target_column]

    def _length_kept(self, source: str) -> bool:
        words = len(source.split())
        return words >= self.min_words and (self.max_words is None or words <= self.max_words)

    def _pair_chunks(self, name: str, table: Dataset) -> Iterator[list[tuple[str, str]]]:
        """The split's (source, target) texts in chunks: empty sides checked, lengths filtered.
        A chunk at a time, so a corpus of millions of pairs is never all Python strings."""
        self._check_sides(table)
        row, kept = 0, 0
        for sources, targets in self._side_chunks(table):
            pairs = []
            for src, tgt in zip(sources, targets, strict=True):
                src, tgt = (src or "").strip(), (tgt or "").strip()
                if not src or not tgt:
                    if not self.drop_empty:
                        side = "source" if not src else "target"
                        raise DataError(
                            f"pair {row} of the '{name}' split has an empty {side} "
                            f"(source {src[:60]!r}, target {tgt[:60]!r}): clean the data or set "
                            "data.drop_empty=true to skip such pairs"
                        )
                elif self._length_kept(src):
                    pairs.append((src, tgt))
                row += 1
            kept += len(pairs)
            yield pairs
        if not kept:
            raise DataError(
                f"no pairs of the '{name}' split have {self.min_words}-{self.max_words} source "
                "words: widen data.min_words/data.max_words"
            )

    def _key_parts(self) -> dict[str, Any]:
        """Everything the cached pairs depend on, save a restored tokenizer's own content."""
        return {
            "source": source_fingerprint(**self.source),
            "sides": [self.source_lang, self.target_lang, self.source_column, self.target_column],
            "translation_column": self.translation_column,
            "split": [self.split_by, self.seed, self.val_fraction, self.test_fraction],
            "filter": [self.min_words, self.max_words, self.drop_empty],
            "tokenizers": [
                tokenizer_settings(self.src_tokenizer_args),
                tokenizer_settings(self.tgt_tokenizer_args),
            ],
        }

    def _load(self) -> None:
        """The pairs from the pair cache, built first when missing: a run whose cache exists
        neither reads the corpus nor trains tokenizers."""
        digest = None
        if self.tgt_tokenizer is not None:  # restored from a checkpoint: keep its ids
            digest = [tokenizer_digest(self.src_tokenizer), tokenizer_digest(self.tgt_tokenizer)]
        folder, parts = keyed_folder(self.cache_dir / "pairs", self._key_parts(), digest)
        manifest, arrays = cached_arrays(folder, self._write_cache, parts, self.verify_cache)
        if self.tgt_tokenizer is None:
            self.load_state_dict(
                {side: (folder / f"{side}.json").read_text() for side in TOKENIZERS}
            )
        self.examples = {
            split: TranslationPairs.from_cache(arrays, split, self.bos_id, self.eos_id)
            for split in manifest["splits"]
        }

    def _write_cache(self, writer: CacheWriter) -> dict[str, Any]:
        """Read the corpus, train the tokenizers (unless restored) and tokenize every split into
        the pair cache's files. The raw text is memory-mapped from a scratch folder in the cache
        being built, removed when done."""
        scratch = writer.folder / "raw"
        scratch.mkdir()
        raw = self._raw_splits(scratch)
        src, tgt = self.src_tokenizer, self.tgt_tokenizer
        if tgt is None:
            train = _Side(lambda: self._pair_chunks("train", raw["train"]), 0)
            src = build_tokenizer(train, self.cache_dir, **self.src_tokenizer_args)
            train = _Side(lambda: self._pair_chunks("train", raw["train"]), 1)
            tgt = build_tokenizer(train, self.cache_dir, **self.tgt_tokenizer_args)
        for side, tokenizer in zip(TOKENIZERS, (src, tgt), strict=True):
            writer.text(f"{side}.json", tokenizer.to_str())
        counts = {
            name: self._write_split(writer, name, table, src, tgt) for name, table in raw.items()
        }
        shutil.rmtree(scratch)
        return {"tokenizer": [tokenizer_digest(src), tokenizer_digest(tgt)], "splits": counts}

    def _write_split(
        self, writer: CacheWriter, name: str, table: Dataset, src: TextTokenizer, tgt: TextTokenizer
    ) -> int:
        """A split tokenized chunk by chunk into packed arrays; evaluation splits also keep the
        source text and the reference in BLEU's normal form."""
        sources = PackedBuilder.into(writer, f"{name}.src", token_dtype(src.vocab_size))
        targets = PackedBuilder.into(writer, f"{name}.tgt", token_dtype(tgt.vocab_size))
        texts = None
        if name != "train":
            texts = (
                PackedBuilder.into(writer, f"{name}.source", np.uint8),
                PackedBuilder.into(writer, f"{name}.reference", np.uint8),
            )
        with tqdm(total=len(table), desc=f"tokenizing {name}", unit="pair", mininterval=2) as bar:
            for pairs in self._pair_chunks(name, table):
                sources.add(src.encode([s for s, _ in pairs]))
                targets.add(tgt.encode([t for _, t in pairs]))
                if texts is not None:
                    texts[0].add_texts([s for s, _ in pairs])
                    texts[1].add_texts([normal_form(tgt, t) for _, t in pairs])
                bar.update(min(ENCODE_BATCH, bar.total - bar.n))
        return sources.count

    def setup(self, stage: str | None = None) -> None:
        if not self.examples:
            self._load()

    # Batches.
    def split_loader(self, split: str, train: bool) -> DataLoader:
        examples = self.examples[split]
        sampler = BucketBatchSampler(
            examples.target_lengths,  # the decoder's steps: most of the time
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            pool_batches=self.pool_batches,
        )
        return self.dataloader(
            examples,
            batch_sampler=sampler,
            collate_fn=TranslationCollator(self.src_pad_id, self.tgt_pad_id),
        )

    # From text to ids and back, for translate() and the plots.
    def encode_sources(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Raw source sentences -> {"src_ids", "src_mask"} for the model."""
        ids, mask = pad_sequences(self._ready().src_tokenizer.encode(texts), self.src_pad_id)
        return {"src_ids": ids, "src_mask": mask}

    def source_tokens(self, text: str) -> list[str]:
        return self._ready().src_tokenizer.tokens(self.src_tokenizer.encode([text])[0])

    def target_tokens(self, ids: Sequence[int]) -> list[str]:
        """Output ids -> tokens up to EOS (excluded); BOS and padding dropped."""
        ids = list(ids)
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        return self._ready().tgt_tokenizer.tokens(
            [i for i in ids if i not in (self.bos_id, self.tgt_pad_id)]
        )

    def decode_targets(self, ids: Tensor) -> list[str]:
        """Output ids (B, T) -> texts in the normal form of the references (for BLEU)."""
        return [join_pieces(self.target_tokens(row)) for row in ids.tolist()]

    # Saved in checkpoints, so a checkpoint translates without the data (attnlab-translate).
    def state_dict(self) -> dict[str, Any]:
        return {
            "src_tokenizer": self.src_tokenizer.to_str(),
            "tgt_tokenizer": self.tgt_tokenizer.to_str(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.src_tokenizer = TextTokenizer.from_str(
            state["src_tokenizer"], self.src_tokenizer_args.get("max_length", DEFAULT_MAX_LENGTH)
        )
        self.tgt_tokenizer = TextTokenizer.from_str(
            state["tgt_tokenizer"], self.tgt_tokenizer_args.get("max_length", DEFAULT_MAX_LENGTH)
        )
