"""Data caches: folders of flat binary arrays (and a few text files), built once, mapped by all.

A cache folder holds ``<name>.bin`` arrays and text files (tokenizers) beside ``manifest.json``,
which records each file's size, checksum and dtype plus what the builder adds (counts, digests).
The folder's name is a key hashing what its content depends on (``cache_key``), so a changed
source or setting gets a new folder and an unchanged one is reused by every run and rank.

One process builds a cache while the others wait on a file lock (DDP ranks, sweeps started
together); it writes into a temporary sibling renamed into place when complete, so a half-written
cache is never read. A cache whose files do not match their manifest (truncated, corrupted) is
rebuilt with a warning; a full disk leaves nothing behind and names the folder that needs space.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from filelock import FileLock

from attnlab.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: xxh3_128 checksums
CHUNK_BYTES = 1 << 24  # checksums read the files in 16 MiB pieces


class StaleCache(Exception):
    """A cache folder that cannot be used as it is (it is rebuilt)."""


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable name for what a cache's content depends on."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _new_digest() -> xxhash.xxh3_128:
    """xxHash's xxh3-128 (HF datasets fingerprints with xxHash too): about 39 GB/s here against
    blake2b's 1.2, so checking a cache at every start costs one read of its files, little more."""
    return xxhash.xxh3_128()


def _checksum(path: Path) -> str:
    digest = _new_digest()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class ArrayWriter:
    """Appends arrays to one binary file, keeping its size and checksum as it goes."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.file = path.open("wb")
        self.digest = _new_digest()
        self.count = 0

    def write(self, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        self.file.write(data)
        self.digest.update(data)
        self.count += len(values)

    def close(self) -> dict[str, Any]:
        self.file.close()
        return {
            "bytes": self.count * self.dtype.itemsize,
            "xxh3_128": self.digest.hexdigest(),
            "dtype": self.dtype.str,
        }


class CacheWriter:
    """What a builder writes a cache with: ``array(name, dtype)`` files and ``text`` files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays: dict[str, ArrayWriter] = {}
        self.texts: dict[str, dict[str, Any]] = {}

    def array(self, name: str, dtype: np.dtype) -> ArrayWriter:
        writer = self.arrays[name] = ArrayWriter(self.folder / f"{name}.bin", dtype)
        return writer

    def text(self, name: str, text: str) -> None:
        path = self.folder / name
        path.write_text(text)
        self.texts[name] = {"bytes": path.stat().st_size, "xxh3_128": _checksum(path)}

    def files(self) -> dict[str, Any]:
        arrays = {name: writer.close() for name, writer in self.arrays.items()}
        return {"arrays": arrays, "texts": self.texts}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete cache in ``folder``, or None if there is none."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == FORMAT_VERSION else None


def _check(path: Path, expected: dict[str, Any], verify: bool) -> int:
    size = path.stat().st_size if path.is_file() else -1
    if size != expected["bytes"]:
        raise StaleCache(f"{path} has {size} bytes, its manifest says {expected['bytes']}")
    if verify and _checksum(path) != expected["xxh3_128"]:
        raise StaleCache(f"{path} does not match its checksum")
    return size


def open_arrays(folder: Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and read-only memory-mapped arrays of the cache in ``folder``.

    Raises ``StaleCache`` naming what is wrong when a file is missing, has the wrong size or
    (with ``verify``) the wrong checksum.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        raise StaleCache(f"{folder} has no readable manifest")
    for name, expected in manifest["files"]["texts"].items():
        _check(folder / name, expected, verify)
    arrays = {}
    for name, expected in manifest["files"]["arrays"].items():
        path = folder / f"{name}.bin"
        size = _check(path, expected, verify)
        dtype = expected["dtype"]
        arrays[name] = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
    return manifest, arrays


def reduce_arrays(cls: Callable, arrays: tuple[np.ndarray, ...]) -> tuple[Callable, tuple]:
    """``__reduce__`` for an object made of arrays, ``cls(*arrays)``: memory maps travel as
    their file names (loader workers started by spawn map the same files instead of receiving a
    copy of the corpus), plain arrays as themselves."""
    if all(isinstance(a, np.memmap) for a in arrays):
        return _map_files, (cls, tuple((a.filename, a.dtype.str) for a in arrays))
    return cls, tuple(np.asarray(a) for a in arrays)


def _map_files(cls: Callable, files: tuple[tuple[str, str], ...]) -> Any:
    return cls(*(np.memmap(name, dtype=dtype, mode="r") for name, dtype in files))


def _build(folder: Path, build: Callable[[CacheWriter], dict[str, Any]], parts: dict) -> None:
    """Run ``build`` into a temporary sibling of ``folder``, renamed into place when done."""
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer = CacheWriter(tmp)
        meta = build(writer)
        manifest = {"format": FORMAT_VERSION, "key": parts, **meta, "files": writer.files()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"no space left for the data cache in '{folder.parent}': free space there, or "
                "set paths.cache_dir to a folder on a bigger disk"
            ) from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached_arrays(
    folder: Path,
    build: Callable[[CacheWriter], dict[str, Any]],
    parts: dict[str, Any],
    verify: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The cache in ``folder`` (manifest, arrays), built first by one process (the others wait)
    when missing or stale. ``build`` writes the files and returns what the manifest adds."""
    try:
        return open_arrays(folder, verify)
    except StaleCache:
        pass
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        try:  # another process may have built it while this one waited
            return open_arrays(folder, verify)
        except StaleCache as stale:
            if folder.exists():
                log.warning("data cache %s is unusable (%s): rebuilding it", folder, stale)
        _build(folder, build, parts)
    return open_arrays(folder, verify=False)


def keyed_folder(root: Path, parts: dict[str, Any], digest: Any | None) -> tuple[Path, dict]:
    """The cache folder under ``root`` for ``parts`` and its key's parts. ``digest`` identifies
    a tokenizer restored from a checkpoint: the settings' folder serves when it was built with
    that tokenizer, else the digest joins the key (a folder of its own)."""
    folder = root / cache_key(parts)
    if digest is not None:
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("tokenizer") != digest:
            parts = {**parts, "tokenizer": digest}
            folder = root / cache_key(parts)
    return folder, parts


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
