"""Two CPU processes (trainer=ddp_cpu, gloo) train one run: one run dir, one set of checkpoints,
and the same result as one process given the same global batch."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

# debug=limit: 5 training and 2 test batches per process and epoch. Two processes of batch 64
# see as many examples per step (128) as one process of batch 128, and the same test tweets.
COMMON = ["experiment=tweet_mean", "logger=csv", "debug=limit", "trainer.max_epochs=2"]


def _run(run_cli, root: Path, *overrides: str) -> dict[str, float]:
    root.mkdir()
    result = run_cli(
        ["train.py", *COMMON, *overrides, "extras.print_config=false"],
        cwd=root,
        env={"ATTNLAB_ROOT": str(root)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((root / "outputs" / "tweet_mean" / "runs").iterdir())
    assert len(runs) == 1, runs
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
    (log,) = runs[0].glob("csv/**/metrics.csv")
    (test,) = [r for r in csv.DictReader(log.open()) if r.get("test/f1")]
    metrics = {k: float(v) for k, v in test.items() if k.startswith("test/") and v}
    metrics["stdout"] = result.stdout + result.stderr
    return metrics


def test_ddp_cpu_matches_one_process_with_the_same_global_batch(run_cli, tmp_path) -> None:
    ddp = _run(run_cli, tmp_path / "ddp", "trainer=ddp_cpu", "data.batch_size=64")
    assert "GLOBAL_RANK: 1" in ddp.pop("stdout")  # really two processes, one run dir
    single = _run(run_cli, tmp_path / "single", "trainer=cpu", "data.batch_size=128")
    single.pop("stdout")
    # Same steps, same examples per step and the same test set; only the shuffle order differs.
    assert ddp["test/loss"] == pytest.approx(single["test/loss"], abs=0.05), (ddp, single)
    assert ddp["test/acc"] == pytest.approx(single["test/acc"], abs=0.08), (ddp, single)


def test_a_sweep_of_ddp_jobs_runs_each_job_once_in_its_own_folder(run_cli, tmp_path) -> None:
    """-m with trainer=ddp_cpu: each job's second process runs that job alone (not the whole
    sweep again) in the job's folder, and the next job starts its own process group."""
    result = run_cli(
        ["train.py", "-m", *COMMON, "trainer=ddp_cpu", "model.dropout=0.1,0.2"],
        cwd=tmp_path,
        env={"ATTNLAB_ROOT": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "tweet_mean" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    assert (result.stdout + result.stderr).count("GLOBAL_RANK: 1") == 2  # one child per job
