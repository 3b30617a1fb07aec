"""Plot a metric against training progress for several runs, read from their CSV logs.

    attnlab-curves outputs/train/multiruns/<timestamp> --metric val/ppl

Arguments are run dirs or dirs holding run dirs (a multirun); each run needs ``logger=csv`` (or
``logger=many``). The x axis is the optimizer step, or tokens seen (``--x tokens``: step x batch
size x block size, from the run's resolved config). Works offline, no W&B server needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from attnlab.errors import command
from attnlab.utils.run_folder import RESOLVED_CONFIG
from attnlab.utils.runs import find_runs, read_metrics
from attnlab.viz import plot_lines


def read_curve(run: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``metric`` from the run's CSV log (the newest version)."""
    rows = [row for row in read_metrics(run) if row.get(metric)]
    return [int(row["step"]) for row in rows], [float(row[metric]) for row in rows]


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--metric", default="val/ppl")
    parser.add_argument("--x", choices=("step", "tokens"), default="step")
    parser.add_argument("--log-y", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("outputs/curves.png"))
    args = parser.parse_args(argv)

    print(f"| run | {args.metric} (last) | best | steps |\n|---|---|---|---|")
    configs = {run: OmegaConf.load(run / RESOLVED_CONFIG) for run in find_runs(args.paths)}
    tasks = [cfg.task_name for cfg in configs.values()]
    series = {}
    for run, cfg in configs.items():
        steps, values = read_curve(run, args.metric)
        if not values:
            continue
        scale = cfg.data.batch_size * cfg.data.get("block_size", 1) if args.x == "tokens" else 1
        unique = tasks.count(cfg.task_name) == 1
        label = cfg.task_name if unique else cfg.get("run_name", run.name)
        series[label] = ([s * scale for s in steps], values)
        best = min(values) if cfg.get("optimized_mode", "min") == "min" else max(values)
        print(f"| {label} | {values[-1]:.4g} | {best:.4g} | {steps[-1]} |")
    xlabel = "tokens seen" if args.x == "tokens" else "optimizer step"
    print(f"saved {plot_lines(series, args.out, xlabel, args.metric, log_y=args.log_y)}")


if __name__ == "__main__":
    main()
