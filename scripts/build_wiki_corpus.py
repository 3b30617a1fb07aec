"""Build the embedded Wikipedia sentence corpus ``wiki_articles.jsonl.gz``.

Source
------
A shortened English Wikipedia dump that ships as test data inside the gensim 4.4.0 wheel::

    pip download --no-deps gensim==4.4.0 -d /tmp/dl

The dump is read straight out of the wheel (it is a zip file); gensim is *not* installed or
imported. Member used::

    gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2

What it does
------------
1. Streams the MediaWiki XML with ``xml.etree.ElementTree.iterparse``.
2. Keeps main-namespace articles only (skips redirects, other namespaces and disambiguation
   pages) and drops reference-like sections (References, External links, See also, ...).
3. Strips wiki markup with regular expressions: comments, ``<ref>`` footnotes, nested
   ``{{templates}}``, ``{| tables |}``, File/Image/Category links, ``[[a|b]]`` -> ``b``,
   external links ``[http://x label]`` -> ``label``, bold/italic quotes, headings, list
   markers and remaining HTML tags/entities.
4. Splits paragraphs into sentences with an abbreviation-aware regex splitter, drops
   sentences shorter than 3 words and articles with fewer than 2 sentences.
5. Writes one JSON object per line, ``{"title": str, "sentences": [str, ...]}``, to a
   gzip file with a fixed timestamp so that rebuilding gives identical bytes.

Usage::

    python scripts/build_wiki_corpus.py --source /tmp/dl/gensim-4.4.0-*.whl
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import html
import io
import json
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "attnlab" / "data" / "embedded" / "wiki_articles.jsonl.gz"
MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
MIN_WORDS = 3
MIN_SENTENCES = 2

# Sections whose content is citations / link lists rather than prose.
SKIP_SECTIONS = {
    "references",
    "external links",
    "see also",
    "further reading",
    "notes",
    "footnotes",
    "bibliography",
    "sources",
    "citations",
    "notes and references",
    "references and notes",
    "works cited",
    "selected bibliography",
    "filmography",
    "discography",
}
# Link prefixes whose links are removed entirely (with their caption).
DROP_LINK_PREFIXES = {"file", "image", "category", "media"}

# --- markup patterns --------------------------------------------------------------------------
RE_COMMENT = re.compile(r"<!--.*?-->", re.S)
RE_REF_SELF = re.compile(r"<ref\b[^>]*/\s*>", re.I)
RE_REF = re.compile(r"<ref\b[^>]*>.*?</ref\s*>", re.I | re.S)
RE_BLOCK_TAGS = re.compile(
    r"<(math|gallery|timeline|syntaxhighlight|source|pre|score|imagemap|chem|ce|hiero|"
    r"references|graph|mapframe)\b[^>]*>.*?</\1\s*>",
    re.I | re.S,
)
RE_TEMPLATE = re.compile(r"\{\{(?:(?!\{\{|\}\}).)*\}\}", re.S)  # innermost {{...}}
RE_TABLE = re.compile(r"\{\|(?:(?!\{\||\|\}).)*\|\}", re.S)  # innermost {| ... |}
RE_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")  # innermost [[...]]
RE_INTERWIKI = re.compile(r"^:?[a-z]{2,3}(?:-[a-z]+)?:")
RE_EXTLINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
RE_BARE_URL = re.compile(r"(?:https?|ftp)://\S+")
RE_TAG = re.compile(r"</?[a-zA-Z][^<>]*?/?>")
RE_QUOTES = re.compile(r"'{2,}")
RE_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
RE_MAGIC = re.compile(r"__[A-Z]+__")
RE_SPACES = re.compile(r"[ \t\u00a0\u2009\u200b]+")
RE_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")
RE_SPACE_PUNCT = re.compile(r"\s+([,.;:!?])")
RE_LEFTOVER = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{\||\|\}|\||<|>")

# --- sentence splitting -----------------------------------------------------------------------
# Abbreviations that are normally followed by a capitalised word mid-sentence.
ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "ft", "jr", "sr", "gen", "col", "lt", "capt",
    "cpt", "sgt", "maj", "adm", "rev", "gov", "sen", "rep", "pres", "hon", "fr", "messrs",
    "no", "nos", "vol", "vols", "fig", "figs", "p", "pp", "chap", "ed", "eds", "trans", "ca",
    "c", "cf", "vs", "v", "approx", "inc", "ltd", "co", "corp", "bros", "dept", "univ", "assn",
    "al", "jan", "feb", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}  # fmt: skip
# Words that, capitalised after a dotted acronym ("U.S."), usually begin a new sentence.
SENTENCE_STARTERS = {
    "the", "a", "an", "in", "on", "at", "it", "its", "he", "she", "they", "we", "i", "this",
    "that", "these", "those", "there", "his", "her", "their", "however", "but", "after",
    "during", "since", "when", "while", "although", "as", "for", "from", "many", "some",
    "most", "other", "one", "both", "by", "with", "according", "about", "today",
}  # fmt: skip
RE_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
RE_LAST_TOKEN = re.compile(r"(\S+)$")
RE_DOTTED_ACRONYM = re.compile(r"^(?:[A-Za-z]\.){2,}$")
RE_NEXT_WORD = re.compile(r"[\"'(\[\u201c\u2018]?([\w-]+)")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences, keeping common abbreviations and initials intact."""
    sentences: list[str] = []
    start = 0
    for m in RE_BOUNDARY.finditer(text):
        rest = text[m.end() :]
        nxt = RE_NEXT_WORD.match(rest)
        if not nxt or not (nxt.group(1)[0].isupper() or nxt.group(1)[0].isdigit()):
            continue  # next sentence must start with a capital letter or digit
        before = text[start : m.start() + 1]
        tok_m = RE_LAST_TOKEN.search(before)
        token = tok_m.group(1).lstrip("(\"'[") if tok_m else ""
        if text[m.start()] == ".":
            bare = token[:-1] if token.endswith(".") else token
            if bare.lower() in ABBREVIATIONS:
                continue
            if len(bare) == 1 and bare.isalpha() and bare.isupper():
                continue  # an initial, e.g. "J. R. R. Tolkien"
            # Dotted acronyms: "e.g.", "i.e." never end a sentence; "U.S." only before a
            # word that usually starts one.
            if RE_DOTTED_ACRONYM.match(token) and (
                token[0].islower() or nxt.group(1).lower() not in SENTENCE_STARTERS
            ):
                continue
        sentences.append(text[start : m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _replace_link(m: re.Match[str]) -> str:
    """Resolve one innermost ``[[...]]`` wiki link to its display text (or nothing)."""
    inner = m.group(1)
    target, _, label = inner.partition("|")
    prefix = target.split(":", 1)[0].strip().lower() if ":" in target else ""
    if prefix in DROP_LINK_PREFIXES or (not label and RE_INTERWIKI.match(target)):
        return ""
    if label:
        return label.split("|")[-1]
    return target.split(":", 1)[1] if prefix and not target.startswith(":") else target.lstrip(":")


def _template_text(m: re.Match[str]) -> str:
    """Replace one innermost ``{{template}}``: keep the text of a few inline ones, drop the rest."""
    parts = [p.strip() for p in m.group(0)[2:-2].split("|")]
    name = parts[0].lower().replace("_", " ")
    args = [p for p in parts[1:] if "=" not in p]
    if name in ("convert", "cvt") and len(args) >= 2:
        if len(args) >= 4 and args[1] in ("-", "to", "and", "or", "\u2013"):
            return f"{args[0]} {'to' if args[1] == '-' else args[1]} {args[2]} {args[3]}"
        return f"{args[0]} {args[1]}"
    if name in ("lang", "transl") and len(args) >= 2:
        return args[-1]
    if name.startswith("lang-") and args:
        return args[0]
    if name in ("nowrap", "nobr", "small", "smaller", "big", "flag", "nihongo", "sic") and args:
        return args[0]
    if name == "as of" and args:
        prefix = "as of " if "lc=y" in parts else "As of "
        return prefix + " ".join(args[:3][::-1])
    return ""


def _remove_nested(
    pattern: re.Pattern[str], text: str, repl: str | Callable[[re.Match[str]], str] = ""
) -> str:
    """Repeatedly substitute innermost matches of ``pattern`` until nothing changes."""
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return text
        text = new


def _paragraphs(text: str) -> list[str]:
    """Second cleaning stage, line by line: sections, headings, lists, tags and entities."""
    paragraphs: list[str] = []
    skip_level = 0  # >0 while inside a skipped section of that heading level
    for raw in text.split("\n"):
        line = raw.strip()
        heading = RE_HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            title = RE_QUOTES.sub("", heading.group(2)).strip().lower()
            if skip_level and level > skip_level:
                continue
            skip_level = level if title in SKIP_SECTIONS else 0
            continue
        if skip_level or not line or line[0] in "|!{}":
            continue  # skipped section, blank line or table debris
        line = line.lstrip("*#:; ").strip()
        line = RE_EXTLINK.sub(r"\1", line)
        line = RE_BARE_URL.sub("", line)
        line = RE_TAG.sub("", line)
        line = RE_QUOTES.sub("", line)
        line = RE_MAGIC.sub("", line)
        line = html.unescape(line)
        line = RE_TAG.sub("", line)  # tags that were written as entities (&lt;br&gt;)
        line = RE_EMPTY_PARENS.sub("", line)
        line = RE_SPACES.sub(" ", line)
        line = RE_SPACE_PUNCT.sub(r"\1", line).strip()
        if line:
            paragraphs.append(line)
    return paragraphs


def clean_article(wikitext: str) -> list[str]:
    """Return the kept sentences of one article."""
    text = RE_COMMENT.sub("", wikitext)
    text = RE_REF_SELF.sub("", text)
    text = RE_REF.sub("", text)
    text = RE_BLOCK_TAGS.sub("", text)
    text = _remove_nested(RE_LINK, text, _replace_link)  # first, so no "|" is left in links
    text = _remove_nested(RE_TEMPLATE, text, _template_text)
    text = _remove_nested(RE_TABLE, text)
    sentences: list[str] = []
    for paragraph in _paragraphs(text):
        for sentence in split_sentences(paragraph):
            if len(sentence.split()) < MIN_WORDS or RE_LEFTOVER.search(sentence):
                continue  # too short, or markup the regexes could not resolve
            sentences.append(sentence)
    return sentences


def iter_pages(xml_stream: io.BufferedIOBase) -> Iterator[tuple[str, str, bool, str]]:
    """Yield ``(title, namespace, is_redirect, wikitext)`` for each ``<page>``."""
    for _, elem in ET.iterparse(xml_stream, events=("end",)):
        if elem.tag.rsplit("}", 1)[-1] != "page":
            continue
        fields: dict[str, str] = {}
        redirect = False
        for child in elem.iter():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "redirect":
                redirect = True
            elif tag in ("title", "ns", "text") and tag not in fields:
                fields[tag] = child.text or ""
        yield fields.get("title", ""), fields.get("ns", ""), redirect, fields.get("text", "")
        elem.clear()


def open_dump(source: Path) -> io.BufferedIOBase:
    """Open the bz2 XML dump from the gensim wheel (or from an extracted ``.bz2`` file)."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            try:
                data = zf.read(MEMBER)
            except KeyError:
                sys.exit(
                    f"error: {source} does not contain {MEMBER}; is it the gensim 4.4.0 wheel?"
                )
        return bz2.BZ2File(io.BytesIO(data))
    return bz2.BZ2File(source)


def build(source: Path, out: Path) -> dict[str, int]:
    """Parse, clean and write the corpus; return summary counts."""
    stats = {"pages": 0, "skipped": 0, "articles": 0, "sentences": 0, "words": 0, "chars": 0}
    records: list[dict[str, object]] = []
    with open_dump(source) as stream:
        for title, ns, redirect, wikitext in iter_pages(stream):
            stats["pages"] += 1
            text_start = wikitext.lstrip()[:9].lower()
            if redirect or ns != "0" or text_start == "#redirect" or "(disambiguation)" in title:
                stats["skipped"] += 1
                continue
            sentences = clean_article(wikitext)
            if len(sentences) < MIN_SENTENCES:
                stats["skipped"] += 1
                continue
            records.append({"title": title, "sentences": sentences})
            stats["articles"] += 1
            stats["sentences"] += len(sentences)
            stats["words"] += sum(len(s.split()) for s in sentences)
            stats["chars"] += sum(len(s) for s in sentences)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with open(out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", filename="", mtime=0) as gz:
        gz.write(payload)
    return stats


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="gensim-4.4.0 wheel (pip download --no-deps gensim==4.4.0) or the extracted .bz2",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl.gz path")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        sys.exit(
            f"error: source not found: {args.source}\n"
            "download it with: pip download --no-deps gensim==4.4.0 -d /tmp/dl"
        )
    stats = build(args.source, args.out)
    size = args.out.stat().st_size
    print(
        f"pages read: {stats['pages']} (skipped {stats['skipped']})\n"
        f"articles:   {stats['articles']}\n"
        f"sentences:  {stats['sentences']}\n"
        f"words:      {stats['words']}\n"
        f"chars:      {stats['chars']}\n"
        f"wrote {args.out} ({size / 1e6:.2f} MB)"
    )


if __name__ == "__main__":
    main()
