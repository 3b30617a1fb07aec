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
operating system keeps one copy of them in memory however many processes read them.

One process builds a cache while the others wait on a file lock (DDP ranks, sweeps started
together); it writes into a temporary folder renamed into place when complete, so a half-written
cache is never read. A cache whose files do not match their manifest (truncated, corrupted) is
rebuilt with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from attnlab.data.tokenization import TextTokenizer
from attnlab.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARRAYS = ("tokens", "sentences", "documents")
CHUNK_BYTES = 1 << 24  # checksums read the files in 16 MiB pieces

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
        arrays = (self.tokens, self.sentences, self.documents)
        if all(isinstance(a, np.memmap) for a in arrays):
            return _map_files, tuple((a.filename, a.dtype.str) for a in arrays)
        return TokenizedSplit, tuple(np.asarray(a) for a in arrays)


def _map_files(*files: tuple[str, str]) -> TokenizedSplit:
    return TokenizedSplit(*(np.memmap(name, dtype=dtype, mode="r") for name, dtype in files))


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable name for what a cache's ids depend on."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def tokenizer_digest(tokenizer: TextTokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:20]


def _checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete cache in ``folder``, or None if there is none."""
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


Splits = dict[str, TokenizedSplit]


def open_cache(folder: Path, verify: bool = True) -> tuple[TextTokenizer, Splits]:
    """The tokenizer and memory-mapped splits of the cache in ``folder``.

    Raises ``StaleCache`` naming what is wrong when a file is missing, has the wrong size or
    (with ``verify``) the wrong checksum.
    """
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("format") != FORMAT_VERSION:
        raise StaleCache(f"{folder} has no readable manifest")
    splits = {}
    for split, entry in manifest["splits"].items():
        arrays = []
        for name in ARRAYS:
            path = folder / f"{split}.{name}.bin"
            expected = entry["files"][name]
            size = path.stat().st_size if path.is_file() else -1
            if size != expected["bytes"]:
                raise StaleCache(f"{path} has {size} bytes, its manifest says {expected['bytes']}")
            if verify and _checksum(path) != expected["blake2b"]:
                raise StaleCache(f"{path} does not match its checksum")
            dtype = manifest["token_dtype"] if name == "tokens" else "int64"
            arrays.append(np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype))
        splits[split] = TokenizedSplit(*arrays)
    tokenizer = TextTokenizer.from_str((folder / "tokenizer.json").read_text())
    return tokenizer, splits


class StaleCache(Exception):
    """A cache folder that cannot be used as it is (it is rebuilt)."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 (2 bytes a token) when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


class _ArrayWriter:
    """Appends arrays to one binary file, keeping its size and checksum as it goes."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path = path
        self.dtype = dtype
        self.file = path.open("wb")
        self.digest = hashlib.blake2b(digest_size=16)
        self.count = 0

    def write(self, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        self.file.write(data)
        self.digest.update(data)
        self.count += len(values)

    def close(self) -> dict[str, Any]:
        self.file.close()
        return {"bytes": self.count * self.dtype.itemsize, "blake2b": self.digest.hexdigest()}


def _write_split(
    folder: Path,
    split: str,
    batches: Iterable[list[Document]],
    tokenizer: TextTokenizer,
    dtype: np.dtype,
    progress: tqdm,
) -> dict[str, Any]:
    """Tokenize ``batches`` of documents into the split's three files; empty sentences and
    documents are dropped."""
    dtypes = {"tokens": dtype, "sentences": np.dtype(np.int64), "documents": np.dtype(np.int64)}
    writers = {name: _ArrayWriter(folder / f"{split}.{name}.bin", dtypes[name]) for name in ARRAYS}
    writers["sentences"].write(np.zeros(1))
    writers["documents"].write(np.zeros(1))
    tokens = sentences = 0
    for docs in batches:
        texts = [sentence for doc in docs for sentence in doc]
        encoded = tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts))
        writers["tokens"].write(np.fromiter((i for e in encoded for i in e.ids), dtype=dtype))
        doc_of = np.repeat(np.arange(len(docs)), [len(doc) for doc in docs])
        kept = lengths > 0
        per_doc = np.bincount(doc_of[kept], minlength=len(docs))
        per_doc = per_doc[per_doc > 0]
        writers["sentences"].write(tokens + np.cumsum(lengths[kept]))
        writers["documents"].write(sentences + np.cumsum(per_doc))
        tokens += int(lengths.sum())
        sentences += int(per_doc.sum())
        progress.update(len(docs))
    files = {name: writer.close() for name, writer in writers.items()}
    documents = files["documents"]["bytes"] // 8 - 1
    return {"tokens": tokens, "sentences": sentences, "documents": documents, "files": files}


def build_cache(
    folder: Path,
    splits: dict[str, tuple[int, Iterator[list[Document]]]],
    tokenizer: TextTokenizer,
    parts: dict[str, Any],
) -> None:
    """Tokenize ``splits`` ({name: (document count, batches of documents)}) into ``folder``.

    Written into a temporary sibling renamed into place at the end: a crash or a full disk
    leaves no partial cache behind.
    """
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = token_dtype(tokenizer.vocab_size)
    try:
        (tmp / "tokenizer.json").write_text(tokenizer.to_str())
        entries = {}
        for split, (count, batches) in splits.items():
            with tqdm(total=count, desc=f"tokenizing {split}", unit="doc", mininterval=2) as bar:
                entries[split] = _write_split(tmp, split, batches, tokenizer, dtype, bar)
        manifest = {
            "format": FORMAT_VERSION,
            "key": parts,
            "tokenizer": tokenizer_digest(tokenizer),
            "token_dtype": dtype.str,
            "splits": entries,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"no space left for the token cache in '{folder.parent}': free space there, or "
                "set paths.cache_dir to a folder on a bigger disk"
            ) from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def derived_array(
    folder: Path, name: str, parts: dict[str, Any], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """An array computed from a cache (an epoch's example plan: Megatron's cached sample index),
    kept in it: computed once, then memory-mapped by every later run and rank. Concurrent
    writers write the same bytes, and the rename is atomic."""
    path = folder / "derived" / f"{name}-{cache_key(parts)}.npy"
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # missing, or cut short
        pass
    array = compute()
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("wb") as file:
        np.save(file, array)
    tmp.replace(path)
    return array


def cached_splits(
    folder: Path,
    build: Callable[[], tuple[TextTokenizer, dict[str, tuple[int, Iterator[list[Document]]]]]],
    parts: dict[str, Any],
    verify: bool = True,
) -> tuple[TextTokenizer, dict[str, TokenizedSplit]]:
    """The cache in ``folder``, built first (by one process; the others wait) when missing or
    stale. ``build`` returns the tokenizer and the documents to tokenize, read only if needed."""
    try:
        return open_cache(folder, verify)
    except StaleCache:
        pass
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        try:  # another process may have built it while this one waited
            return open_cache(folder, verify)
        except StaleCache as stale:
            if folder.exists():
                log.warning("token cache %s is unusable (%s): rebuilding it", folder, stale)
        tokenizer, splits = build()
        build_cache(folder, splits, tokenizer, parts)
    return open_cache(folder, verify=False)
