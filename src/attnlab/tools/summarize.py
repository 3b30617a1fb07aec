"""Summarize a sweep: one table of every job's swept overrides and final metrics, and a plot.

    python train.py -m experiment=tweet_attention logger=csv model.score=dot,cosine,bilinear,mlp
    attnlab-summarize outputs/tweet_attention/multiruns/<timestamp> [metric=val/f1] \
        [x=model.score] [by=model.embed_dim] [out=summary.csv]
    python train.py -m experiment=tweet_attention,tweet_mean seed=1,2,3 logger=csv
    attnlab-summarize outputs/*/multiruns/<timestamp>     # each experiment writes its own folder

Reads each job dir of a Hydra multirun (grid or Optuna): its ``.hydra/overrides.yaml``, the last
value of every val/* and test/* column of its ``csv/version_*/metrics.csv`` (run the sweep with
``logger=csv`` or ``logger=many``) and its W&B run id from ``run.json``. Prints the table as
markdown and writes it as CSV (``out``, default ``<sweep>/summary.csv``), and plots ``metric``
(default: the sweep's ``optimized_metric``) against the swept value ``x`` beside it (``.png``):
a line for a numeric value, bars for a categorical one, averaged over jobs that share it, one
series per value of ``by``. Works offline.

When ``seed`` is one of the swept keys (``-m ... seed=1,2,3``), the jobs that differ only by
seed are also summarised as one row each: every metric's mean, standard deviation and n
(``<out>_seeds.csv``); with exactly two such configurations, Welch's t-test says whether the
difference of the main metric is larger than the spread between seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from omegaconf import OmegaConf

from attnlab.errors import ConfigError, DataError, command
from attnlab.utils.run_folder import RUN_INFO
from attnlab.utils.runs import (
    CONFIG,
    final_metrics,
    job_overrides,
    metrics_log,
    multirun_jobs,
    read_metrics,
)
from attnlab.utils.script_args import parse_key_values
from attnlab.viz import plot_bars, plot_lines

Row = dict[str, str | float]


def swept_keys(overrides: list[dict[str, str]]) -> list[str]:
    """Override keys whose value is not the same in every job, in command-line order."""
    keys = list(dict.fromkeys(k for job in overrides for k in job))
    return [k for k in keys if len({job.get(k) for job in overrides}) > 1]


def job_row(job: Path, overrides: dict[str, str], swept: list[str]) -> Row:
    """The job's number, its swept values, W&B run id and final val/test metrics (blank when it
    failed before logging any)."""
    row: Row = {"job": job.name, **{k: overrides.get(k, "") for k in swept}}
    info = job / RUN_INFO
    if info.is_file() and "wandb_id" in (ids := json.loads(info.read_text())):
        row["wandb_id"] = ids["wandb_id"]
    if metrics_log(job) is not None:
        row.update(final_metrics(read_metrics(job)))
    return row


SEED = "seed"


def over_seeds(rows: list[Row], swept: list[str], metrics: list[str]) -> list[Row]:
    """One row per configuration (the swept values but the seed): n and each metric's mean and
    standard deviation over the seeds (std 0 for a single seed), as ``<metric>`` / ``<metric>
    std``."""
    keys = [k for k in swept if k != SEED]
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k, "") for k in keys)].append(row)
    summary = []
    for values, members in groups.items():
        row: Row = {**dict(zip(keys, values, strict=True)), "n": float(len(members))}
        for metric in metrics:
            found = [m[metric] for m in members if isinstance(m.get(metric), float)]
            if found:
                row[metric] = mean(found)
                row[f"{metric} std"] = stdev(found) if len(found) > 1 else 0.0
        summary.append(row)
    return summary


def seed_values(rows: list[Row], config: Row, swept: list[str], metric: str) -> list[float]:
    """``metric`` of each seed of one configuration (a row of ``over_seeds``)."""
    keys = [k for k in swept if k != SEED]
    return [
        r[metric]
        for r in rows
        if all(r.get(k, "") == config.get(k, "") for k in keys) and isinstance(r.get(metric), float)
    ]


def welch_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test: are two configurations' means different, given the
    spread between their seeds?"""
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def seed_markdown(summary: list[Row], keys: list[str], metrics: list[str]) -> str:
    """The seed summary as markdown: ``mean ± std`` per metric."""
    shown = [
        {
            **{k: row.get(k, "") for k in keys},
            "n": f"{row['n']:.0f}",
            **{m: f"{row[m]:.4g} ± {row[f'{m} std']:.2g}" for m in metrics if m in row},
        }
        for row in summary
    ]
    return markdown(shown, [*keys, "n", *metrics])


def write_csv(rows: list[Row], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def report_seeds(
    rows: list[Row], swept: list[str], metrics: list[str], main_metric: str | None, out: Path
) -> list[Row]:
    """Print and save the over-seeds table; with two configurations, Welch's test on the main
    metric."""
    keys = [k for k in swept if k != SEED]
    summary = over_seeds(rows, swept, metrics)
    print(f"over seeds ({SEED}=" + ",".join(sorted({str(r[SEED]) for r in rows})) + "):")
    print(seed_markdown(summary, keys, metrics))
    path = out.with_name(f"{out.stem}_seeds.csv")
    write_csv(summary, path)
    print(f"saved {path}")
    if len(summary) == 2 and main_metric in metrics:
        a, b = (seed_values(rows, config, swept, main_metric) for config in summary)
        if len(a) > 1 and len(b) > 1:
            p = welch_p_value(a, b)
            verdict = "larger than" if p < 0.05 else "within"
            print(
                f"{main_metric}: Welch's t-test p = {p:.3g}: the difference is {verdict} the "
                "spread between seeds (5% level)"
            )
    return summary


def sweep_setting(jobs: list[Path], key: str) -> str | None:
    """``key`` (e.g. optimized_metric) from the first job's resolved config that has one."""
    for job in jobs:
        if (job / CONFIG).is_file():
            return OmegaConf.load(job / CONFIG).get(key)
    return None


def markdown(rows: list[Row], columns: list[str]) -> str:
    def cell(value: str | float) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot(rows: list[Row], metric: str, x: str, by: str | None, path: Path) -> Path:
    """``metric`` against the swept ``x``, the mean over jobs sharing (x, by): one line per ``by``
    value when every x is a number (log axis over two decades or more), else grouped bars."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if isinstance(row.get(metric), float) and row[x] != "":
            groups[str(row[by]) if by else metric][str(row[x])].append(row[metric])
    xs = list(dict.fromkeys(v for group in groups.values() for v in group))
    if not xs:
        raise DataError(f"no job logged {metric} and set {x}: nothing to plot")
    averaged = any(len(vals) > 1 for group in groups.values() for vals in group.values())
    ylabel = f"{metric} (mean over jobs)" if averaged else metric
    label = (lambda name: f"{by}={name}") if by else str
    if all(_is_number(v) for v in xs):
        lines = {}
        for name, g in groups.items():
            ordered = sorted(g, key=float)
            lines[label(name)] = ([float(v) for v in ordered], [mean(g[v]) for v in ordered])
        low, high = min(float(v) for v in xs), max(float(v) for v in xs)
        return plot_lines(lines, path, x, ylabel, log_x=low > 0 and high / low >= 100)
    series = {
        label(name): [mean(g[v]) if v in g else float("nan") for v in xs]
        for name, g in groups.items()
    }
    return plot_bars(xs, series, path, f"{metric} by {x}", x, ylabel, fmt="%.3g")


@command
def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweeps", type=Path, nargs="+", help="multirun dirs: outputs/<task>/multiruns/<ts>"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="the CSV (default: <first sweep>/summary.csv)"
    )
    parser.add_argument("--metric", default=None, help="plotted metric (default: optimized_metric)")
    parser.add_argument("--x", default=None, help="swept key on the x axis (default: the first)")
    parser.add_argument("--by", default=None, help="another swept key: one series per value")
    args = parse_key_values(parser, sys.argv[1:] if argv is None else argv)

    jobs = multirun_jobs(args.sweeps)
    overrides = [job_overrides(job) for job in jobs]
    swept = swept_keys(overrides)
    rows = [job_row(job, o, swept) for job, o in zip(jobs, overrides, strict=True)]
    metrics = sorted({k for row in rows for k in row if k.startswith(("val/", "test/"))})
    if not metrics:
        raise DataError("no job of the sweep has csv/version_*/metrics.csv: sweep with logger=csv")
    columns = list(dict.fromkeys(k for row in rows for k in row if k not in metrics)) + metrics
    common = {k: v for k, v in overrides[0].items() if k not in swept}
    print("common overrides: " + (" ".join(f"{k}={v}" for k, v in common.items()) or "none"))
    print(markdown(rows, columns))

    out = args.out or args.sweeps[0] / "summary.csv"
    write_csv(rows, out)
    print(f"saved {out}")

    metric = args.metric or sweep_setting(jobs, "optimized_metric")
    if SEED in swept:
        report_seeds(rows, swept, metrics, metric, out)
    if metric not in metrics:
        raise ConfigError(f"metric={metric} was not logged by any job; choose one of {metrics}")
    for name, key in (("x", args.x), ("by", args.by)):
        if key is not None and key not in swept:
            raise ConfigError(f"{name}={key} is not a swept override; swept: {swept}")
    x = args.x or next((k for k in swept if k != args.by), None)
    if x is None:
        print("no override varies between the jobs: no plot")
    else:
        print(f"saved {plot(rows, metric, x, args.by, out.with_suffix('.png'))}")
    return rows


if __name__ == "__main__":
    main()
