"""A corpus of documents, tokenized once into a token cache that every run and rank maps.

The language models (blocks of one token stream) and BERT (sentence pairs, segments) read their
examples from the same cached arrays (``token_cache``): a corpus costs its tokens' bytes on disk,
not Python objects per token in every process, and a run whose cache exists starts without
reading the source at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnlab.data.array_cache import keyed_folder
from attnlab.data.base import TokenizedDataModule
from attnlab.data.interface import TextInterface
from attnlab.data.sources import (
    DataError,
    hf_datasets,
    load_splits,
    require_columns,
    source_fingerprint,
    stream_splits,
)
from attnlab.data.streaming import StreamedDocuments
from attnlab.data.token_cache import Document, TokenizedSplit, cached_splits, tokenizer_digest
from attnlab.data.tokenization import TextTokenizer, build_tokenizer, tokenizer_settings

if TYPE_CHECKING:
    from datasets import Dataset
    from datasets import IterableDataset as RecordStream

READ_BATCH = 1024  # documents read and tokenized together while a cache is built


class CorpusDataModule(TokenizedDataModule):
    """Documents from a hub dataset, local files or the embedded Wikipedia, as token arrays.

    Subclasses cut examples from ``self.splits`` and may adapt the tokenizer
    (``prepare_tokenizer``) before the corpus is tokenized with it.
    """

    def __init__(
        self,
        source: Mapping[str, Any],
        text_column: str = "text",
        sentences_column: str | None = None,
        tokenizer: Mapping[str, Any] | None = None,
        cache_dir: str = "outputs/cache",
        verify_cache: bool = True,
        **splits_and_loader: Any,
    ) -> None:
        """``splits_and_loader``: batch size, workers, split fractions, seed (SplitDataModule)."""
        super().__init__(TextInterface(), **splits_and_loader)
        self.source = dict(source)
        self.text_column = text_column
        self.sentences_column = sentences_column
        self.tokenizer_args = {**(tokenizer or {}), "max_length": None}
        self.cache_dir = Path(cache_dir)
        self.verify_cache = verify_cache
        self.streaming = bool(self.source.pop("streaming", False))
        self.shuffle_buffer = int(self.source.pop("shuffle_buffer", 10_000))
        self.splits: dict[str, TokenizedSplit] = {}
        self.record_streams: dict[str, RecordStream] = {}
        self.cache_folder: Path | None = None

    def prepare_tokenizer(self, tokenizer: TextTokenizer) -> None:
        """Check or extend a tokenizer before the corpus is tokenized with it."""

    def _key_parts(self) -> dict[str, Any]:
        """Everything the cached ids depend on, save the tokenizer's own content."""
        return {
            "source": source_fingerprint(**self.source),
            "columns": [self.text_column, self.sentences_column],
            "split": [self.seed, self.val_fraction, self.test_fraction],
            "tokenizer": {**tokenizer_settings(self.tokenizer_args), "kind": type(self).__name__},
        }

    def _cache_folder(self) -> tuple[Path, dict[str, Any]]:
        """The cache of this corpus and tokenizer settings (and its key's parts); for a tokenizer
        restored from a checkpoint, that folder if it holds its ids, else one of its own."""
        digest = None
        if self.tokenizer is not None:
            self.prepare_tokenizer(self.tokenizer)
            digest = tokenizer_digest(self.tokenizer)
        return keyed_folder(self.cache_dir / "tokens", self._key_parts(), digest)

    def setup(self, stage: str | None = None) -> None:
        if not (self.splits or self.record_streams):
            self._load()
        self.keep_examples()

    def _load(self) -> None:
        if self.streaming:
            self._open_streams()
            return
        folder, parts = self._cache_folder()
        tokenizer, self.splits = cached_splits(folder, self._read_corpus, parts, self.verify_cache)
        self.cache_folder = folder
        if self.tokenizer is None:
            self.tokenizer = tokenizer
            self.prepare_tokenizer(tokenizer)
        for name, split in self.splits.items():
            if split.num_documents == 0:
                raise DataError(
                    f"the '{name}' split has no document with a sentence (column "
                    f"'{self.sentences_column or self.text_column}'): check the data columns"
                )

    def _read_corpus(self) -> tuple[TextTokenizer, dict[str, tuple[int, Iterator[list[Document]]]]]:
        """The source's splits as batches of documents, and the tokenizer (trained on the train
        split unless given): what a cache is built from."""
        raw = load_splits(
            **self.source,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        names = raw["train"].column_names
        if self.sentences_column not in (None, *names) and self.text_column in names:
            raise DataError(
                f"column '{self.sentences_column}' (data.sentences_column) not found; the data has "
                f"columns {names}: set data.sentences_column=null to read its "
                f"'{self.text_column}' column (data.text_column) instead"
            )
        column = {"sentences_column": self.sentences_column} if self.sentences_column else {}
        require_columns(raw["train"], column or {"text_column": self.text_column})
        if self.sentences_column and isinstance(raw["train"][0][self.sentences_column], str):
            raise DataError(
                f"data.sentences_column='{self.sentences_column}' holds strings, not lists of "
                "sentences: set data.sentences_column=null to read data.text_column line by line"
            )
        tokenizer = self.tokenizer
        if tokenizer is None:
            texts = []
            if not self.tokenizer_args.get("vocab"):  # trained on the training documents
                texts = [" ".join(doc) for docs in self._batches(raw["train"]) for doc in docs]
            tokenizer = build_tokenizer(texts, self.cache_dir, **self.tokenizer_args)
            self.prepare_tokenizer(tokenizer)
        return tokenizer, {name: (len(split), self._batches(split)) for name, split in raw.items()}

    def _batches(self, split: Dataset) -> Iterator[list[Document]]:
        """The documents of ``split`` read ``READ_BATCH`` records at a time, so a corpus is never
        all in memory as Python strings."""
        for batch in split.iter(batch_size=READ_BATCH):
            yield self._documents(batch[self.sentences_column or self.text_column])

    def _documents(self, values: list[Any]) -> list[Document]:
        """Each record's value as a document, a list of sentences (or of the lines of its text);
        empty ones dropped. Plain-text sources (wikitext) have one line per record: one-line
        documents."""
        if self.sentences_column:
            docs = [[s for s in sentences if s.strip()] for sentences in values]
        else:
            texts = (str(text).splitlines() for text in values)
            docs = [[line for line in lines if line.strip()] for lines in texts]
        return [doc for doc in docs if doc]

    def _open_streams(self) -> None:
        """The source's splits as record streams (``source.streaming``), checked on their first
        record; the tokenizer must be given, as a stream cannot train one."""
        if self.tokenizer is None:
            if not self.tokenizer_args.get("vocab"):
                raise DataError(
                    "a stream cannot train a vocabulary: give data.tokenizer.vocab (e.g. "
                    "bert-base-uncased, a vocab.txt or tokenizer.json), or source.streaming=false"
                )
            self.tokenizer = build_tokenizer([], self.cache_dir, **self.tokenizer_args)
        self.prepare_tokenizer(self.tokenizer)
        streams = stream_splits(**self.source)
        first = next(iter(streams["train"]), None)
        if first is None:
            raise DataError("the train stream has no records: check source.files / source.hub")
        column = {"sentences_column": self.sentences_column} if self.sentences_column else {}
        require_columns(
            hf_datasets().Dataset.from_list([first]), column or {"text_column": self.text_column}
        )
        self.record_streams = streams

    def documents_stream(self, split: str) -> StreamedDocuments:
        """The documents of a streamed split, tokenized as read: train shuffled in a buffer (a
        new order each epoch), each rank reading its share."""
        records = self.record_streams[split]
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if split == "train":
            records = records.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            records.set_epoch(epoch)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            from datasets.distributed import split_dataset_by_node

            records = split_dataset_by_node(records, trainer.global_rank, trainer.world_size)
        column = self.sentences_column or self.text_column
        return StreamedDocuments(records, self._documents, column, self.tokenizer)
