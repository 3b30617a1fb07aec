"""Images on disk: MNIST-format IDX files and class folders (``folder/CLASS/IMAGE.png``)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import datasets
import numpy as np
from datasets import DatasetDict

from attnlab.data.sources import SPLIT_ALIASES, DataError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GREY_MODES = ("1", "L", "I", "I;16", "F")  # PIL modes read as one channel


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; gzip-compressed if it ends in .gz) as an array.

    Header: two zero bytes, a type code (0x08 = uint8 ...), the number of dimensions, then each
    dimension as a big-endian uint32; the values follow, big-endian, row-major.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"IDX file not found: '{path}' (data.source.idx); check the path")
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file '{path}': {error}") from error
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES:
        raise DataError(
            f"'{path}' is not an IDX file (it starts with {data[:4].hex()}, not 0000 + a type "
            "code); gzip-compressed files must end in .gz"
        )
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)) * dtype.itemsize:
        raise DataError(
            f"'{path}' holds {len(body)} bytes of values but its header promises shape {dims} "
            f"of {dtype.name}: the file is truncated or corrupt"
        )
    return np.frombuffer(body, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def load_image_folder(folder: str | Path) -> DatasetDict:
    """``folder/CLASS/*.png`` (or ``folder/SPLIT/CLASS/*.png``) through datasets' imagefolder."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder not found: '{folder}' (data.source.folder); check the path")
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(folder))
    except Exception as error:  # datasets raises several types for an empty or odd folder
        raise DataError(
            f"could not read the image folder '{folder}': {error}. Expected class sub-folders "
            "(folder/CLASS/IMAGE.png), optionally under train/, validation/ and test/"
        ) from error
    if "label" not in next(iter(loaded.values())).column_names:  # imagefolder: one class, no labels
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DataError(
            f"the image folder '{folder}' has a single class ({classes}): a classifier needs at "
            "least two, one sub-folder of images each (folder/CLASS/IMAGE.png)"
        )
    return DatasetDict({SPLIT_ALIASES.get(k, k): v for k, v in loaded.items()})
