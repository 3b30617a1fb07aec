"""Contextual vs static embeddings: one word's BERT vectors across sentences, compared.

    attnlab-embeddings                       # "bank" with all-MiniLM-L6-v2
    attnlab-embeddings word=play pretrained=PATH.ckpt vocab=bert-base-uncased \
        sentence="they play football" sentence="we saw a play at the theatre" ...

The static vector of a word is its row of the input embedding table: one vector whatever the
sentence, so its cosine similarity across contexts is always 1. The contextual vector is the
encoder's last hidden state at the word (the mean over its word pieces): it changes with the
sentence, and sentences that use the word in the same sense get similar vectors. Prints the
similarity table and writes it, with a heatmap of both, to ``out`` (markdown + PNG).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from attnlab.data.tokenization import TextTokenizer, build_tokenizer
from attnlab.errors import ConfigError, command
from attnlab.hf.bert import load_pretrained_bert, minilm_dir
from attnlab.models.bert import BertModel
from attnlab.utils.script_args import parse_key_values
from attnlab.viz import plt, save_figure

BANK = [
    "he sat on the bank of the river and watched the water .",
    "the boat drifted toward the muddy bank of the stream .",
    "she deposited the money at the bank on monday .",
    "the bank raised its interest rates for loans .",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--word", default="bank", help="the word to follow across sentences")
    parser.add_argument("--sentence", action="append", help="a sentence with the word (repeat)")
    parser.add_argument("--pretrained", default="minilm", help="minilm | HF BERT dir | .ckpt")
    parser.add_argument("--vocab", default=None, help="vocab.txt (default: the model's or BERT's)")
    parser.add_argument("--out", default="outputs/contextual_embeddings", help="output folder")
    return parse_key_values(parser, argv)


def word_span(ids: list[int], word_ids: list[int], sentence: str) -> slice:
    """Where the word's pieces first occur in the sentence's ids; a clear error if absent."""
    for start in range(len(ids) - len(word_ids) + 1):
        if ids[start : start + len(word_ids)] == word_ids:
            return slice(start, start + len(word_ids))
    raise ConfigError(f"the word is not in the sentence '{sentence}'; give sentences that have it")


@torch.no_grad()
def similarities(
    bert: BertModel, tokenizer: TextTokenizer, word: str, sentences: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(contextual, static) cosine-similarity matrices (N, N) of the word across sentences."""
    cls, sep = tokenizer.token_id("[CLS]"), tokenizer.token_id("[SEP]")
    (word_ids,) = tokenizer.encode([word])
    vectors = []
    for sentence, ids in zip(sentences, tokenizer.encode(sentences), strict=True):
        ids = [cls, *ids, sep]
        hidden, _ = bert(torch.tensor([ids]))
        vectors.append(hidden[0, word_span(ids, word_ids, sentence)].mean(0))
    contextual = F.normalize(torch.stack(vectors), dim=-1)
    static = bert.embeddings.word_embeddings.weight[word_ids].mean(0)
    static = F.normalize(static.expand(len(sentences), -1), dim=-1)
    return contextual @ contextual.T, static @ static.T


def markdown_table(word: str, sentences: list[str], matrix: torch.Tensor) -> str:
    head = f"| '{word}' in | " + " | ".join(f"S{i + 1}" for i in range(len(sentences))) + " |"
    lines = [head, "|---" * (len(sentences) + 1) + "|"]
    for i, sentence in enumerate(sentences):
        cells = " | ".join(f"{v:.2f}" for v in matrix[i].tolist())
        lines.append(f"| S{i + 1}: {sentence} | {cells} |")
    return "\n".join(lines)


def plot(word: str, matrices: dict[str, torch.Tensor], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8))
    for ax, (name, matrix) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(matrix.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        labels = [f"S{i + 1}" for i in range(matrix.size(0))]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        for row, values in enumerate(matrix.tolist()):
            for col, value in enumerate(values):
                color = "black" if value > 0.6 else "white"
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color=color)
        ax.set_title(f"{name}: cosine of '{word}'", fontsize=9)
    fig.colorbar(image, ax=list(axes))
    return save_figure(fig, path)


@command
def main(argv: list[str] | None = None) -> dict[str, torch.Tensor]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sentences = args.sentence or BANK
    bert = load_pretrained_bert(args.pretrained).eval()
    vocab = args.vocab
    if vocab is None:
        model_dir = minilm_dir() if args.pretrained == "minilm" else Path(args.pretrained)
        vocab = str(model_dir / "vocab.txt") if model_dir.is_dir() else "bert-base-uncased"
    tokenizer = build_tokenizer([], cache_dir=args.out, vocab=vocab, max_length=None)
    contextual, static = similarities(bert, tokenizer, args.word, sentences)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = [
        "## contextual (last hidden state)",
        markdown_table(args.word, sentences, contextual),
        "## static (input embedding table)",
        markdown_table(args.word, sentences, static),
    ]
    text = "\n\n".join(tables) + "\n"
    (out / f"{args.word}.md").write_text(text)
    png = plot(args.word, {"contextual": contextual, "static": static}, out / f"{args.word}.png")
    print(text)
    print(f"saved {out / f'{args.word}.md'} and {png}")
    return {"contextual": contextual, "static": static}


if __name__ == "__main__":
    main()
