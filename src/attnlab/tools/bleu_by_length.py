"""Test BLEU by source length of several translation runs, side by side (Bahdanau et al., fig. 2).

    python train.py experiment=translation_attention logger=csv
    python train.py experiment=translation_rnn logger=csv
    attnlab-bleu-by-length outputs/translation_attention/runs/<run> \
        outputs/translation_rnn/runs/<run> out=bleu_by_length.png

Reads each run's ``csv/version_*/metrics.csv`` (runs made with ``logger=csv`` or ``logger=many``)
and prints a markdown table: corpus BLEU and BLEU per bucket of source words.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from attnlab.errors import DataError, command
from attnlab.utils.run_folder import RESOLVED_CONFIG
from attnlab.utils.runs import final_metrics, read_metrics
from attnlab.utils.script_args import parse_key_values
from attnlab.viz import plot_bars

PREFIX = "test/bleu_len_"


def test_bleu(run: Path) -> dict[str, float]:
    """The run's final test/bleu* values."""
    scores = final_metrics(read_metrics(run), prefixes=("test/bleu",))
    if "test/bleu" not in scores:
        raise DataError(f"'{run}' logged no test/bleu: did the run reach its test?")
    return scores


def run_name(run: Path) -> str:
    """The experiment the run dir belongs to (its saved config's task_name), else its folder."""
    config = run / RESOLVED_CONFIG
    if config.is_file():
        return str(OmegaConf.load(config).get("task_name", run.name))
    return run.name


@command
def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run dirs of translation experiments")
    parser.add_argument("--out", default="bleu_by_length.png", help="the bar chart")
    args = parse_key_values(parser, sys.argv[1:] if argv is None else argv)
    scores = {run_name(run): test_bleu(run) for run in args.runs}
    buckets = sorted(
        {k.removeprefix(PREFIX) for s in scores.values() for k in s if k.startswith(PREFIX)},
        key=lambda name: int(name.split("-")[0].rstrip("+")),
    )
    lines = [
        "| run | test BLEU | " + " | ".join(f"{b} words" for b in buckets) + " |",
        "|---" * (len(buckets) + 2) + "|",
    ]
    for name, score in scores.items():
        cells = " | ".join(f"{score.get(PREFIX + b, float('nan')):.1f}" for b in buckets)
        lines.append(f"| {name} | {score['test/bleu']:.1f} | {cells} |")
    table = "\n".join(lines)
    series = {name: [s.get(PREFIX + b, 0.0) for b in buckets] for name, s in scores.items()}
    plot_bars(buckets, series, args.out, "test BLEU by source length", "source words", "BLEU")
    print(table)
    print(f"saved {args.out}")
    return table


if __name__ == "__main__":
    main()
