"""Reading finished runs back from disk (for the scripts that compare them): run dirs, the jobs of
a multirun, their command-line overrides and their CSV metric logs. No W&B server needed."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import yaml

from attnlab.errors import DataError
from attnlab.utils.run_folder import RESOLVED_CONFIG as CONFIG

OVERRIDES = Path(".hydra") / "overrides.yaml"  # written by Hydra into every job dir


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every folder under ``paths`` (run dirs, or dirs holding them) with a resolved config."""
    paths = list(paths)
    runs = [p.parent for path in paths for p in sorted(Path(path).glob(f"**/{CONFIG}"))]
    if not runs:
        raise DataError(f"no runs (folders with {CONFIG}) under {[str(p) for p in paths]}")
    return runs


def _job_order(job: Path) -> tuple[bool, int, str]:
    """Numbered job dirs by number (2 before 10), any others after them by name."""
    return (False, int(job.name), "") if job.name.isdigit() else (True, 0, job.name)


def multirun_jobs(sweep_dirs: Iterable[Path]) -> list[Path]:
    """The job dirs of Hydra multiruns (each has ``.hydra/overrides.yaml`` or a resolved config),
    in job-number order; failed jobs are included. A sweep over experiments writes each
    experiment's jobs under its own ``outputs/<task>/multiruns/<timestamp>``: give them all (the
    shell's ``outputs/*/multiruns/<timestamp>``)."""
    sweep_dirs = [Path(d) for d in sweep_dirs]
    jobs: set[Path] = set()
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise DataError(f"multirun dir not found: '{sweep_dir}'; check the path")
        marked = [*sweep_dir.glob(f"**/{OVERRIDES}"), *sweep_dir.glob(f"**/{CONFIG}")]
        jobs |= {p.parent.parent if p.name == OVERRIDES.name else p.parent for p in marked}
    if not jobs:
        raise DataError(
            f"no jobs (folders with {OVERRIDES} or {CONFIG}) under "
            f"{', '.join(repr(str(d)) for d in sweep_dirs)}: give the folder of a "
            "`python train.py -m ...` sweep"
        )
    return sorted(jobs, key=lambda job: (_job_order(job), str(job)))


def job_overrides(job: Path) -> dict[str, str]:
    """The job's command-line overrides as {key: value} (``+``/``++`` prefixes dropped)."""
    path = job / OVERRIDES
    if not path.is_file():
        return {}
    pairs = (item.split("=", 1) for item in yaml.safe_load(path.read_text()) or [])
    return {key.lstrip("+~"): value for key, value in (p for p in pairs if len(p) == 2)}


def metrics_log(run: Path) -> Path | None:
    """The run's newest ``csv/version_*/metrics.csv`` (written with ``logger=csv`` or ``many``)."""
    logs = sorted(
        run.glob("csv/version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.removeprefix("version_")),
    )
    return logs[-1] if logs else None


def read_metrics(run: Path) -> list[dict[str, str]]:
    """The rows of the run's CSV metric log; an error naming the fix when there is none."""
    log = metrics_log(run)
    if log is None:
        raise DataError(f"'{run}' has no csv/version_*/metrics.csv: train with logger=csv")
    with log.open() as f:
        return list(csv.DictReader(f))


def final_metrics(
    rows: Iterable[dict[str, str]], prefixes: tuple[str, ...] = ("val/", "test/")
) -> dict[str, float]:
    """The last logged value of every column starting with one of ``prefixes``."""
    last: dict[str, float] = {}
    for row in rows:
        last.update({k: float(v) for k, v in row.items() if v and k.startswith(prefixes)})
    return dict(sorted(last.items()))
