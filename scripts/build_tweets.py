"""Build the embedded tweets: the 4,200 human-rated tweets of the VADER paper.

Source: the vaderSentiment 3.3.2 sdist (MIT licence), fetched with
    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2
which holds additional_resources/hutto_ICWSM_2014.tar.gz -> tweets_GroundTruth.txt
(tab-separated: id, mean rating in -4..+4 from 10 human raters, text).

Writes src/attnlab/data/embedded/tweets.tsv.gz with columns id, rating, text, split: the ratings
are kept as they are (labels are derived at load time, so the threshold stays a config value) and
the train/validation/test split is fixed here by a seeded permutation (80/10/10).

    python scripts/build_tweets.py --sdist vaderSentiment-3.3.2.tar.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/attnlab/data/embedded/tweets.tsv.gz"
INNER_TAR = "additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "tweets_GroundTruth.txt"


def read_ground_truth(sdist: Path) -> list[tuple[int, float, str]]:
    """(id, mean rating, text) rows of tweets_GroundTruth.txt, read from inside the sdist."""
    if not sdist.is_file():
        raise SystemExit(
            f"{sdist} not found; fetch it with: "
            "pip download --no-deps --no-binary :all: vaderSentiment==3.3.2"
        )
    with tarfile.open(sdist) as outer:
        inner_name = next(n for n in outer.getnames() if n.endswith(INNER_TAR))
        inner_bytes = outer.extractfile(inner_name).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        name = next(n for n in inner.getnames() if n.endswith(MEMBER))
        text = inner.extractfile(name).read().decode("utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip():
            tweet_id, rating, tweet = line.split("\t", 2)
            rows.append((int(tweet_id), float(rating), tweet.strip()))
    return rows


def assign_splits(n: int, seed: int, val: float, test: float) -> list[str]:
    """A seeded permutation cut into train / validation / test."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test, n_val = round(n * test), round(n * val)
    splits = ["train"] * n
    for rank, index in enumerate(order):
        if rank < n_test:
            splits[index] = "test"
        elif rank < n_test + n_val:
            splits[index] = "validation"
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, default=Path("vaderSentiment-3.3.2.tar.gz"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--val", type=float, default=0.1)
    parser.add_argument("--test", type=float, default=0.1)
    args = parser.parse_args()

    rows = read_ground_truth(args.sdist)
    splits = assign_splits(len(rows), args.seed, args.val, args.test)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["id", "rating", "text", "split"])
        for (tweet_id, rating, text), split in zip(rows, splits, strict=True):
            writer.writerow([tweet_id, rating, text, split])
    counts = {s: splits.count(s) for s in ("train", "validation", "test")}
    print(f"wrote {len(rows)} tweets to {args.out}: {counts}")


if __name__ == "__main__":
    main()
