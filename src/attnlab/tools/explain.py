"""Explain a tweet classifier's prediction: the class probabilities and each token's weight.

    attnlab-explain ckpt_path=outputs/tweet_attention/runs/<run>/checkpoints/last.ckpt \
        text="I love this phone but the battery is awful" [png=explain.png]

Works from the checkpoint alone (it carries the config and the tokenizer).
"""

from __future__ import annotations

import argparse
import sys

import torch
from rich.console import Console
from rich.table import Table

from attnlab.errors import command
from attnlab.pipeline import load_checkpoint
from attnlab.utils.script_args import parse_key_values
from attnlab.viz import plot_token_weights


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by train.py")
    parser.add_argument("--text", action="append", required=True, help="text to explain (repeat)")
    parser.add_argument("--png", default=None, help="also save the coloured tokens as a PNG")
    return parse_key_values(parser, argv)


@command
def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _, _, task = load_checkpoint(args.ckpt_path)
    data = task.data
    batch = data.encode(args.text)
    with torch.no_grad():
        logits, weights = task(batch["input_ids"], batch["attention_mask"])
    probabilities = logits.softmax(-1)
    console, rows = Console(), []
    for i, text in enumerate(args.text):
        length = int(batch["attention_mask"][i].sum())
        tokens = data.tokenizer.tokens(batch["input_ids"][i, :length].tolist())
        token_weights = weights[i, :length].tolist()
        label = data.class_names[int(probabilities[i].argmax())]
        scores = ", ".join(
            f"{name} {p:.2f}"
            for name, p in zip(data.class_names, probabilities[i].tolist(), strict=True)
        )
        console.print(f"\n[bold]{text}[/bold]\nprediction: [bold]{label}[/bold] ({scores})")
        table = Table("token", "weight", "")
        for token, weight in zip(tokens, token_weights, strict=True):
            table.add_row(token, f"{weight:.3f}", "#" * round(weight * 40))
        console.print(table)
        rows.append((tokens, token_weights, f"{label}: {text[:80]}"))
    if args.png:
        console.print(f"saved {plot_token_weights(rows, args.png)}")


if __name__ == "__main__":
    main()
