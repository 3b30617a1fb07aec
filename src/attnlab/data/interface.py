"""What tasks, callbacks and tools need of the data besides its batches, in one small object.

A DataModule owns one ``DataInterface`` (``datamodule.interface``): its tokenizer(s) or image
statistics, its class names and a few fixed validation examples. The pipeline hands it to the
task (``task.data``); callbacks and tools read it from there, so none of them reaches into a
DataModule, and batches hold tensors only. Its state (no examples) is what a DataModule saves
in checkpoints, so a checkpoint encodes, decodes and names classes without the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from attnlab.data.collate import ClassificationCollator, pad_sequences
from attnlab.data.tokenization import DEFAULT_MAX_LENGTH, TextTokenizer

NUM_EXAMPLES = 16  # fixed validation examples kept for the pictures callbacks draw
BOS, EOS = "[CLS]", "[SEP]"  # a translation target's ends: the trained vocabulary's own tokens


@dataclass
class DataInterface:
    """Class names (classification) and ``examples``: the first ``NUM_EXAMPLES`` validation
    examples as one batch, filled when the DataModule is set up (empty from a checkpoint)."""

    class_names: list[str] = field(default_factory=list)
    examples: dict[str, Tensor] = field(default_factory=dict)

    def first(self, count: int) -> dict[str, Tensor]:
        """The first ``count`` fixed examples as one batch."""
        return {name: values[:count] for name, values in self.examples.items()}


@dataclass
class TextInterface(DataInterface):
    """One tokenizer; ``bert_format`` wraps encoded texts in ``[CLS] .. [SEP]``."""

    tokenizer: TextTokenizer | None = None
    bert_format: bool = False

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text; with ``bert_format``, ``[CLS] ids [SEP]`` within the tokenizer's
        ``max_length`` (what a pretrained BERT expects)."""
        if not self.bert_format:
            return self.tokenizer.encode(texts)
        cls, sep = self.tokenizer.token_id("[CLS]"), self.tokenizer.token_id("[SEP]")
        limit = self.tokenizer.max_length or 512
        return [[cls, *ids, sep] for ids in self.tokenizer.encode(texts, limit - 2)]

    def encode(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """A classifier's batch from raw texts (labels 0): for explain and the Python API."""
        collate = ClassificationCollator(self.tokenizer.pad_id)
        return collate([(ids, 0) for ids in self.encode_ids(texts)])

    def state_dict(self) -> dict[str, Any]:
        state = {"tokenizer": self.tokenizer.to_str()}
        return {**state, "class_names": self.class_names} if self.class_names else state

    def load_state_dict(self, state: dict[str, Any], max_length: int | None) -> None:
        self.tokenizer = TextTokenizer.from_str(state["tokenizer"], max_length)
        self.class_names = list(state.get("class_names", []))


@dataclass
class PairInterface(DataInterface):
    """Source and target tokenizers of translation: sources in, target ids back to text."""

    src_tokenizer: TextTokenizer | None = None
    tgt_tokenizer: TextTokenizer | None = None

    @property
    def bos_id(self) -> int:
        return self.tgt_tokenizer.token_id(BOS)

    @property
    def eos_id(self) -> int:
        return self.tgt_tokenizer.token_id(EOS)

    def encode_sources(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Raw source sentences -> {"src_ids", "src_mask"} for the model."""
        ids, mask = pad_sequences(self.src_tokenizer.encode(texts), self.src_tokenizer.pad_id)
        return {"src_ids": ids, "src_mask": mask}

    def source_tokens(self, text: str) -> list[str]:
        return self.src_tokenizer.tokens(self.src_tokenizer.encode([text])[0])

    def target_tokens(self, ids: Sequence[int]) -> list[str]:
        """Output ids -> tokens up to EOS (excluded); BOS and padding dropped."""
        ids = list(ids)
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        dropped = (self.bos_id, self.tgt_tokenizer.pad_id)
        return self.tgt_tokenizer.tokens([i for i in ids if i not in dropped])

    def decode_targets(self, ids: Tensor) -> list[str]:
        """Output ids (B, T) -> texts in the normal form of the references (for BLEU)."""
        return [join_pieces(self.target_tokens(row)) for row in ids.tolist()]

    def state_dict(self) -> dict[str, Any]:
        return {
            "src_tokenizer": self.src_tokenizer.to_str(),
            "tgt_tokenizer": self.tgt_tokenizer.to_str(),
        }

    def load_state_dict(self, state: dict[str, Any], max_lengths: Sequence[int | None]) -> None:
        src, tgt = max_lengths
        self.src_tokenizer = TextTokenizer.from_str(state["src_tokenizer"], src)
        self.tgt_tokenizer = TextTokenizer.from_str(state["tgt_tokenizer"], tgt)


@dataclass
class ImageInterface(DataInterface):
    """What a checkpoint needs to take new images: their size, channels and normalisation."""

    image_size: int | None = None
    channels: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "class_names": self.class_names,
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.class_names = list(state["class_names"])
        self.image_size, self.channels = state["image_size"], state["channels"]
        self.mean, self.std = list(state["mean"]), list(state["std"])


def join_pieces(tokens: Sequence[str]) -> str:
    """WordPiece tokens -> words separated by spaces ('##' pieces glued to the previous one)."""
    words: list[str] = []
    for token in tokens:
        if token.startswith("##") and words:
            words[-1] += token[2:]
        else:
            words.append(token)
    return " ".join(words)


def max_length_of(tokenizer_args: dict[str, Any]) -> int | None:
    """The ``max_length`` a restored tokenizer gets: the configured one, else the default."""
    return tokenizer_args.get("max_length", DEFAULT_MAX_LENGTH)
