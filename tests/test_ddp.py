"""Two CPU processes (trainer=ddp_cpu, gloo) train one run: one run dir, one set of checkpoints."""

from __future__ import annotations

import csv


def test_ddp_cpu_writes_one_run_dir(run_cli, tmp_path) -> None:
    result = run_cli(
        [
            "train.py",
            "experiment=tweet_mean",
            "trainer=ddp_cpu",
            "logger=csv",
            "debug=limit",
            "trainer.max_epochs=2",
            "extras.print_config=false",
        ],
        cwd=tmp_path,
        env={"ATTNLAB_ROOT": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stdout + result.stderr  # really two processes
    runs = list((tmp_path / "outputs" / "tweet_mean" / "runs").iterdir())
    assert len(runs) == 1, runs
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
    (log,) = runs[0].glob("csv/**/metrics.csv")
    rows = [r for r in csv.DictReader(log.open()) if r.get("test/f1")]
    assert len(rows) == 1 and 0 <= float(rows[0]["test/f1"]) <= 1
