"""WordPiece tokenization on the ``tokenizers`` library: trained on the training split or given.

A vocabulary trained here is cached under ``cache_dir`` by a hash of its training texts and
settings, so every run (and ``eval.py``) on the same data gets the same ids without retraining.
``vocab='bert-base-uncased'`` selects the vendored BERT vocabulary, ``'wiki-wordpiece-8k'`` the
one trained on the embedded Wikipedia; any other value is a path to a
``vocab.txt`` (one token per line) or a ``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer

from attnlab.data.sources import EMBEDDED_DIR, source_fingerprint
from attnlab.errors import ConfigError, DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DEFAULT_MAX_LENGTH = 128  # tokens kept per text unless the tokenizer config says otherwise
BUILTIN_VOCABS = {
    "bert-base-uncased": EMBEDDED_DIR / "bert-base-uncased-vocab.txt",
    # trained on the embedded Wikipedia train split, pinned (training is not deterministic)
    "wiki-wordpiece-8k": EMBEDDED_DIR / "wiki_wordpiece_8k.json",
}


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the special ids and sizes the models need."""

    def __init__(self, tokenizer: Tokenizer, max_length: int | None = None) -> None:
        missing = [t for t in ("[PAD]", "[UNK]") if tokenizer.token_to_id(t) is None]
        if missing:
            raise DataError(f"vocabulary lacks the special tokens {missing}; add them to it")
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def pad_id(self) -> int:
        return self.tokenizer.token_to_id("[PAD]")

    def token_id(self, token: str) -> int:
        """The id of a (special) token; a clear error when the vocabulary lacks it."""
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise DataError(f"vocabulary has no '{token}' token; use a vocabulary that has it")
        return token_id

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_length`` (default: the tokenizer's)."""
        limit = max_length or self.max_length
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        return [seq[:limit] for seq in ids] if limit else ids

    def tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.tokenizer.id_to_token(i) for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def vocab(self) -> list[str]:
        """Tokens ordered by id."""
        return [t for t, _ in sorted(self.tokenizer.get_vocab().items(), key=lambda kv: kv[1])]

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_str(cls, serialized: str, max_length: int | None = None) -> TextTokenizer:
        return cls(Tokenizer.from_str(serialized), max_length)


def _bert_pipeline(tokenizer: Tokenizer, lowercase: bool) -> Tokenizer:
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _load_vocab(vocab: str, lowercase: bool) -> Tokenizer:
    path = BUILTIN_VOCABS.get(vocab, Path(vocab).expanduser())
    if not path.is_file():
        raise DataError(
            f"vocabulary file not found: '{vocab}'; give a vocab.txt/tokenizer.json path or one "
            f"of {list(BUILTIN_VOCABS)}, or tokenizer.vocab=null to train one on the data"
        )
    if path.suffix == ".json":
        return Tokenizer.from_file(str(path))
    return _bert_pipeline(Tokenizer(WordPiece.from_file(str(path), unk_token="[UNK]")), lowercase)


def _train(texts: Sequence[str], vocab_size: int, lowercase: bool, min_frequency: int) -> Tokenizer:
    tokenizer = _bert_pipeline(Tokenizer(WordPiece(unk_token="[UNK]")), lowercase)
    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def build_tokenizer(
    texts: Sequence[str],
    cache_dir: str | Path,
    vocab: str | None = None,
    vocab_size: int = 8000,
    lowercase: bool = True,
    min_frequency: int = 2,
    max_length: int | None = DEFAULT_MAX_LENGTH,
) -> TextTokenizer:
    """Load ``vocab`` if given, else train WordPiece on ``texts`` (cached by content hash)."""
    if vocab:
        return TextTokenizer(_load_vocab(vocab, lowercase), max_length)
    if not texts:
        raise DataError("cannot train a tokenizer on an empty training split")
    digest = hashlib.sha1(f"{vocab_size}|{lowercase}|{min_frequency}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace") + b"\0")
    cache = Path(cache_dir) / "tokenizers" / f"wordpiece-{digest.hexdigest()[:16]}.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    # WordPiece training is not deterministic: processes that start together (DDP under torchrun
    # or srun, sweeps) must share one vocabulary, so the first trains and the others wait for it.
    with FileLock(f"{cache}.lock"):
        if not cache.is_file():
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            _train(texts, vocab_size, lowercase, min_frequency).save(str(tmp))
            tmp.replace(cache)  # atomic: a crash never leaves a half-written vocabulary
    return TextTokenizer(Tokenizer.from_file(str(cache)), max_length)


def tokenizer_settings(args: Mapping[str, Any]) -> dict[str, Any]:
    """Tokenizer settings as a part of a cache key: a vocabulary file by its stamp, so an edited
    file makes a new cache."""
    vocab = args.get("vocab")
    if vocab:
        vocab = source_fingerprint(files=str(BUILTIN_VOCABS.get(vocab, vocab)))
    return {**args, "vocab": vocab}


def pretrained_vocab(pretrained: str | None, default: str) -> str:
    """The vocabulary that fits the weights of ``model.pretrained``: for a checkpoint of our own
    pretraining (a ``.ckpt``), the tokenizer saved in it, written once beside it as
    ``<name>.tokenizer.json``; otherwise ``default`` (MiniLM and BERT-base: bert-base-uncased).
    Fine-tuning then encodes the text with the ids the encoder was trained on."""
    if not pretrained or not str(pretrained).endswith(".ckpt"):
        return default
    path = Path(pretrained).expanduser()
    out = path.with_name(f"{path.stem}.tokenizer.json")
    if out.is_file() and out.stat().st_mtime >= path.stat().st_mtime:
        return str(out)
    if not path.is_file():
        raise ConfigError(f"pretrained checkpoint not found: '{pretrained}' (model.pretrained)")
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    saved = [
        v["tokenizer"] for v in checkpoint.values() if isinstance(v, dict) and "tokenizer" in v
    ]
    if not saved:
        return default
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(saved[0])
    tmp.replace(out)  # atomic: ranks starting together read a whole file or write their own
    return str(out)
