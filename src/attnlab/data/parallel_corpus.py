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
split off): references are normalised that way and ``PairInterface.decode_targets`` joins
WordPiece pieces back into the same form.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from attnlab.data.array_cache import CacheWriter, cached_arrays, keyed_folder
from attnlab.data.base import SplitDataModule, first_examples
from attnlab.data.interface import PairInterface, max_length_of
from attnlab.data.packed import ENCODE_BATCH, PackedBuilder
from attnlab.data.samplers import BucketBatchSampler
from attnlab.data.sources import (
    DataError,
    ensure_splits,
    load_splits,
    require_columns,
    source_fingerprint,
    split_by_group,
)
from attnlab.data.tab_separated import tab_separated_splits
from attnlab.data.token_cache import token_dtype, tokenizer_digest
from attnlab.data.tokenization import TextTokenizer, build_tokenizer, tokenizer_settings
from attnlab.data.translation_pairs import (
    PairSide,
    TranslationCollator,
    TranslationPairs,
    normal_form,
)

TOKENIZERS = ("src_tokenizer", "tgt_tokenizer")  # state_dict keys and pair-cache file stems


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
        eval_batch_size: int | None = None,
        pool_batches: int = 50,
        cache_dir: str = "outputs/cache",
        verify_cache: bool = True,
        **splits_and_loader: Any,
    ) -> None:
        """``splits_and_loader``: batch size, workers, split fractions, seed (SplitDataModule)."""
        defaults = {"batch_size": 64, "val_fraction": 0.05}
        super().__init__(PairInterface(), **{**defaults, **splits_and_loader})
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
        self.eval_batch_size = eval_batch_size or self.batch_size
        self.pool_batches = pool_batches
        self.cache_dir = Path(cache_dir)
        self.verify_cache = verify_cache
        self.examples: dict[str, TranslationPairs] = {}

    @property
    def src_tokenizer(self) -> TextTokenizer | None:
        return self.interface.src_tokenizer

    @property
    def tgt_tokenizer(self) -> TextTokenizer | None:
        return self.interface.tgt_tokenizer

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
        return self._ready().interface.bos_id

    @property
    def eos_id(self) -> int:
        return self._ready().interface.eos_id

    def _ready(self) -> ParallelCorpusDataModule:
        if self.tgt_tokenizer is None:
            self._load()
        return self

    # Loading.
    def _raw_splits(self, scratch: Path | None = None) -> DatasetDict:
        """The source's train/validation/test tables, before filtering; .txt/.tsv files are
        written as Arrow into ``scratch`` when given (else held in memory)."""
        fractions = {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
        columns = [self.source_column, self.target_column]
        tables = tab_separated_splits(self.source, columns, scratch)
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
            train = PairSide(lambda: self._pair_chunks("train", raw["train"]), 0)
            src = build_tokenizer(train, self.cache_dir, **self.src_tokenizer_args)
            train = PairSide(lambda: self._pair_chunks("train", raw["train"]), 1)
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
        self.keep_examples()

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

    def batch(self, split: str, count: int) -> dict[str, Tensor]:
        collate = TranslationCollator(self.src_pad_id, self.tgt_pad_id)
        return collate(first_examples(self.examples[split], count))

    # Saved in checkpoints, so a checkpoint translates without the data (attnlab-translate).
    def state_dict(self) -> dict[str, Any]:
        return self.interface.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sides = (self.src_tokenizer_args, self.tgt_tokenizer_args)
        self.interface.load_state_dict(state, [max_length_of(args) for args in sides])
