"""Token caches: each split of a corpus tokenized once into flat memory-mapped arrays.

A corpus is documents of sentences. Tokenized, one split is three flat arrays (the layout of
nanoGPT's ``train.bin`` and Megatron's ``.bin/.idx``, plus sentence boundaries for BERT's pairs):

- ``<split>.tokens.bin``: every token id, uint16 when the vocabulary fits, else uint32;
- ``<split>.sentences.bin``: int64 offsets, sentence ``s`` is tokens ``sentences[s]`` to
  ``sentences[s+1]``;
- ``<split>.documents.bin``: int64 offsets, document ``d`` is sentences
  ``documents[d]`` to ``documents[d+1]``.

They live in ``<cache_dir>/tokens/<key>/`` beside ``tokenizer.json`` (the ids' tokenizer) and
``manifest.json`` (sizes and checksums), where the key hashes what the ids depend on: the source
(local files by path, size and mtime; a hub dataset by name, config and revision), the split and
column settings and the tokenizer. Every run and every rank maps the same files read-only: the
operating system keeps one copy of them in memory however many processes read them. Building
once under a lock, atomically, and rebuilding a damaged cache is ``array_cache``'s job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from attnlab.data.array_cache import CacheWriter, cached_arrays, reduce_arrays
from attnlab.data.encoding import BatchEncoder
from attnlab.data.tokenization import TextTokenizer

ARRAYS = ("tokens", "sentences", "documents")

Document = list[str]  # a document: its sentences (or lines) as text


class TokenizedSplit:
    """One split's flat arrays (memory maps when read from a cache, plain arrays in tests).

    Pickled, a memory-mapped split sends only its file names, so loader workers started by
    spawn or forkserver map the same files instead of receiving a copy of the corpus.
    """

    def __init__(self, tokens: np.ndarray, sentences: np.ndarray, documents: np.ndarray) -> None:
        self.tokens = tokens
        self.sentences = sentences
        self.documents = documents

    @classmethod
    def from_documents(cls, docs: Iterable[Iterable[Iterable[int]]]) -> TokenizedSplit:
        """In-memory arrays of documents given as sentences of token ids (tests, small data)."""
        lengths, counts, tokens = [], [], []
        for doc in docs:
            doc = [list(s) for s in doc]
            counts.append(len(doc))
            for sentence in doc:
                lengths.append(len(sentence))
                tokens.extend(sentence)
        return cls(
            np.asarray(tokens, dtype=np.uint32),
            np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]),
            np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
        )

    @property
    def num_documents(self) -> int:
        return len(self.documents) - 1

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def document_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of every document in ``tokens``: documents are contiguous there."""
        bounds = self.sentences[self.documents]
        return bounds[:-1], bounds[1:]

    def document(self, index: int) -> list[np.ndarray]:
        """Document ``index`` as its sentences' token ids."""
        first, last = self.documents[index], self.documents[index + 1]
        bounds = self.sentences[first : last + 1]
        return [self.tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def __reduce__(self) -> tuple[Callable, tuple]:
        return reduce_arrays(TokenizedSplit, (self.tokens, self.sentences, self.documents))


def tokenizer_digest(tokenizer: TextTokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:20]


Splits = dict[str, TokenizedSplit]


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 (2 bytes a token) when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def _write_split(
    writer: CacheWriter,
    split: str,
    batches: Iterable[list[Document]],
    encoder: BatchEncoder,
    progress: tqdm,
) -> dict[str, int]:
    """Tokenize ``batches`` of documents into the split's three arrays; empty sentences and
    documents are dropped."""
    dtypes = {
        "tokens": encoder.dtype,
        "sentences": np.dtype(np.int64),
        "documents": np.dtype(np.int64),
    }
    files = {name: writer.array(f"{split}.{name}", dtypes[name]) for name in ARRAYS}
    files["sentences"].write(np.zeros(1))
    files["documents"].write(np.zeros(1))
    tokens = sentences = documents = 0
    for docs, ids, lengths in encoder.map(batches, _sentences):
        files["tokens"].write(ids)
        doc_of = np.repeat(np.arange(len(docs)), [len(doc) for doc in docs])
        kept = lengths > 0
        per_doc = np.bincount(doc_of[kept], minlength=len(docs))
        per_doc = per_doc[per_doc > 0]
        files["sentences"].write(tokens + np.cumsum(lengths[kept]))
        files["documents"].write(sentences + np.cumsum(per_doc))
        tokens += int(lengths.sum())
        sentences += int(per_doc.sum())
        documents += len(per_doc)
        progress.update(len(docs))
    return {"tokens": tokens, "sentences": sentences, "documents": documents}


def _sentences(docs: list[Document]) -> list[str]:
    return [sentence for doc in docs for sentence in doc]


SplitSources = dict[str, tuple[int, Iterator[list[Document]]]]  # name: (documents, batches)


def cached_splits(
    folder: Path,
    build: Callable[[], tuple[TextTokenizer, SplitSources]],
    parts: dict[str, Any],
    verify: bool = True,
) -> tuple[TextTokenizer, Splits]:
    """The tokenizer and memory-mapped splits of the cache in ``folder``, built first (by one
    process; the others wait) when missing or stale. ``build`` returns the tokenizer and the
    documents to tokenize, read only if needed."""

    def write(writer: CacheWriter) -> dict[str, Any]:
        tokenizer, splits = build()
        writer.text("tokenizer.json", tokenizer.to_str())
        counts = {}
        with BatchEncoder(tokenizer.tokenizer, token_dtype(tokenizer.vocab_size)) as encoder:
            for split, (count, batches) in splits.items():
                with tqdm(
                    total=count, desc=f"tokenizing {split}", unit="doc", mininterval=2
                ) as bar:
                    counts[split] = _write_split(writer, split, batches, encoder, bar)
        return {"tokenizer": tokenizer_digest(tokenizer), "splits": counts}

    manifest, arrays = cached_arrays(folder, write, parts, verify)
    splits = {
        split: TokenizedSplit(*(arrays[f"{split}.{name}"] for name in ARRAYS))
        for split in manifest["splits"]
    }
    return TextTokenizer.from_str((folder / "tokenizer.json").read_text()), splits
