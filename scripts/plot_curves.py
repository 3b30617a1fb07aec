"""Plot a metric against training progress for several runs, read from their CSV logs.

    python scripts/plot_curves.py outputs/train/multiruns/<timestamp> --metric val/ppl

Arguments are run dirs or dirs holding run dirs (a multirun); each run needs ``logger=csv`` (or
``logger=many``). The x axis is the optimizer step, or tokens seen (``--x tokens``: step x batch
size x block size, from the run's resolved config). Works offline, no W&B server needed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def find_runs(paths: list[Path]) -> list[Path]:
    """Every folder under ``paths`` that holds a ``config_resolved.yaml``."""
    runs = []
    for path in paths:
        runs += sorted(p.parent for p in path.glob("**/config_resolved.yaml"))
    if not runs:
        raise SystemExit(f"no runs (folders with config_resolved.yaml) under {paths}")
    return runs


def read_curve(run: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``metric`` from the run's CSV log (the newest version)."""
    logs = sorted(run.glob("csv/**/metrics.csv"))
    if not logs:
        raise SystemExit(f"{run} has no csv/**/metrics.csv: train it with logger=csv")
    steps, values = [], []
    with logs[-1].open() as f:
        for row in csv.DictReader(f):
            if row.get(metric):
                steps.append(int(row["step"]))
                values.append(float(row[metric]))
    return steps, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--metric", default="val/ppl")
    parser.add_argument("--x", choices=("step", "tokens"), default="step")
    parser.add_argument("--log-y", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("outputs/curves.png"))
    args = parser.parse_args()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    print(f"| run | {args.metric} (last) | best | steps |\n|---|---|---|---|")
    configs = {run: OmegaConf.load(run / "config_resolved.yaml") for run in find_runs(args.paths)}
    tasks = [cfg.task_name for cfg in configs.values()]
    for run, cfg in configs.items():
        steps, values = read_curve(run, args.metric)
        if not values:
            continue
        scale = cfg.data.batch_size * cfg.data.get("block_size", 1) if args.x == "tokens" else 1
        unique = tasks.count(cfg.task_name) == 1
        label = cfg.task_name if unique else cfg.get("run_name", run.name)
        ax.plot([s * scale for s in steps], values, marker="o", markersize=3, label=label)
        best = min(values) if cfg.get("optimized_mode", "min") == "min" else max(values)
        print(f"| {label} | {values[-1]:.4g} | {best:.4g} | {steps[-1]} |")
    ax.set_xlabel("tokens seen" if args.x == "tokens" else "optimizer step")
    ax.set_ylabel(args.metric)
    if args.log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
