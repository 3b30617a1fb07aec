"""Translate sentences with a trained translation checkpoint and show the alignment.

    attnlab-translate \
        ckpt_path=outputs/translation_attention/runs/<run>/checkpoints/last.ckpt \
        text="In the beginning God created the heavens and the earth." [beam_size=5] [png=a.png]

Works from the checkpoint alone (it carries the config and both tokenizers). For each target
token the table shows the source token it attended to most and the whole attention row.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from attnlab.errors import command
from attnlab.pipeline import load_checkpoint
from attnlab.utils.script_args import parse_key_values
from attnlab.viz import clean_token, plot_alignments


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by train.py")
    parser.add_argument("--text", action="append", required=True, help="text to translate (repeat)")
    parser.add_argument("--beam_size", type=int, default=None, help="beam width (default: run's)")
    parser.add_argument("--length_penalty", type=float, default=None, help="for beam search")
    parser.add_argument("--png", default=None, help="also save the alignment heatmaps as a PNG")
    return parse_key_values(parser, argv)


@command
def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _, _, task = load_checkpoint(args.ckpt_path)
    if args.beam_size is not None:
        task.decoding, task.beam_size = "beam", args.beam_size  # width 1: greedy
    if args.length_penalty is not None:
        task.length_penalty = args.length_penalty
    results = task.translate(args.text)
    console = Console(width=200)
    for result in results:
        console.print(f"\n[bold]{result['source']}[/bold]")
        console.print(f"translation: {result['translation']}")
        alignment = result["alignment"]
        if alignment is None:
            console.print("(this model has no attention: no alignment to show)")
            continue
        sources = [clean_token(t) for t in result["source_tokens"]]
        table = Table("target", "attends to", "weight", *sources)
        for token, row in zip(result["target_tokens"], alignment.tolist(), strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            table.add_row(
                clean_token(token), sources[best], f"{row[best]:.2f}", *(f"{w:.2f}" for w in row)
            )
        console.print(table)
    rows = [
        (r["alignment"], r["source_tokens"], r["target_tokens"], r["translation"][:90])
        for r in results
        if r["alignment"] is not None and r["target_tokens"]
    ]
    if args.png and rows:
        console.print(f"saved {plot_alignments(rows, args.png)}")
    return results


if __name__ == "__main__":
    main()
