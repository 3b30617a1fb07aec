"""attnlab-bench at a tiny size: every field of the report is there, and our BERT and Hugging
Face's learn alike from the same weights and batches (timings are not checked: machines vary)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from attnlab.tools import benchmark  # noqa: E402  (needs transformers)

TINY = ["--hidden", "32", "--layers", "2", "--heads", "4", "--intermediate", "64",
        "--seq-len", "16", "--batch", "4", "--vocab", "100", "120"]  # fmt: skip


def test_benchmark_writes_json_and_markdown_with_every_contender(tmp_path) -> None:
    benchmark.main([*TINY, "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["meta"]["vocab"] == [100] and report["meta"]["iters"] == 3  # --quick
    meta_fields = {"device_name", "threads", "load_average", "torch", "transformers"}
    assert meta_fields <= report["meta"].keys()
    assert [(r["vocab_size"], r["dtype"]) for r in report["bert_mlm"]] == [
        (100, "fp32"),
        (100, "bf16"),
    ]
    for row in report["bert_mlm"]:
        assert row["hf_best"] in ("sdpa", "eager")
        for name in ("ours", "hf_sdpa", "hf_eager"):
            run = row[name]
            assert len(run["step_seconds"]) == 3 and len(run["losses"]) == 4
            assert run["tokens_per_s"] > 0 and run["mfu"] > 0
        best = row[f"hf_{row['hf_best']}"]
        assert row["ratio"] == pytest.approx(row["ours"]["tokens_per_s"] / best["tokens_per_s"])
        tolerance = 1e-4 if row["dtype"] == "fp32" else 2e-2  # equal learning, step by step
        assert row["max_loss_gap"] < tolerance, row
    assert [r["dtype"] for r in report["encoder"]] == ["fp32", "bf16"]
    assert report["encoder"][0]["max_loss_gap"] < 1e-5
    table = (tmp_path / "benchmark.md").read_text()
    assert "| 100 | fp32 |" in table and "| bf16 |" in table
