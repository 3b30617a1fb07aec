"""attnlab-bench at a tiny size: every family's report is complete, and ours and its peer learn
alike from the same weights and batches (timings are not checked: machines vary)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from attnlab.tools import benchmark  # noqa: E402  (needs transformers)

TINY = ["--hidden", "32", "--layers", "2", "--heads", "4", "--intermediate", "64",
        "--seq-len", "16", "--batch", "4", "--vocab", "100", "120", "--lm-vocab", "100",
        "--seq2seq-vocab", "50", "--seq2seq-batch", "4", "--vit-batch", "4",
        "--image-size", "8", "--dtype", "fp32", "bf16"]  # fmt: skip
PEERS = {
    "bert": ["ours", "hf_sdpa", "hf_eager"],
    "encoder": ["ours", "torch"],
    "lm": ["ours", "hf_sdpa", "hf_eager"],
    "vit": ["ours", "hf_sdpa", "hf_eager"],
    "seq2seq": ["ours", "textbook"],
    "bert_real": ["ours", "ours_padded", "hf_sdpa", "hf_eager"],
    "lm_real": ["ours", "hf_sdpa", "hf_eager"],
}
FP32_GAP = {"bert": 1e-4, "encoder": 1e-5, "lm": 1e-5, "vit": 1e-5, "seq2seq": 1e-5}
FP32_GAP |= {"bert_real": 1e-4, "lm_real": 1e-5}
EXPERIMENTS = {"bert_real": ["bert_mlm_nsp", "bert_mlm"], "lm_real": ["lm_transformer"]}


def test_every_family_races_its_peer_from_the_same_weights(tmp_path) -> None:
    benchmark.main([*TINY, "--quick", "--out", str(tmp_path), "--cache-dir", str(tmp_path)])
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["meta"]["vocab"] == [100] and report["meta"]["iters"] == 3  # --quick
    meta_fields = {"device_name", "threads", "load_average", "torch", "transformers"}
    assert meta_fields <= report["meta"].keys()
    assert [r["vocab_size"] for r in report["bert"]] == [100, 100]
    for family, peers in PEERS.items():
        experiments = EXPERIMENTS.get(family, [None])
        assert [r["dtype"] for r in report[family]] == ["fp32", "bf16"] * len(experiments)
        assert [r.get("experiment") for r in report[family][::2]] == experiments
        for row in report[family]:
            assert list(row["contenders"]) == peers
            for run in row["contenders"].values():
                assert len(run["step_seconds"]) == 3 and len(run["losses"]) == 4
                assert run["items_per_s"] > 0
            best = row["contenders"][row["best_peer"]]
            ours = row["contenders"]["ours"]
            assert row["ratio"] == pytest.approx(ours["items_per_s"] / best["items_per_s"])
            tolerance = FP32_GAP[family] if row["dtype"] == "fp32" else 5e-2
            assert row["max_loss_gap"] < tolerance, (family, row["dtype"], row["max_loss_gap"])
    assert report["bert"][0]["contenders"]["ours"]["mfu"] > 0
    pairs = report["bert_real"][0]  # our path that computes the padding learns the same
    assert pairs["padding"].endswith("%") and pairs["best_peer"].startswith("hf")
    gaps = zip(*(pairs["contenders"][n]["losses"] for n in ("ours", "ours_padded")), strict=True)
    assert max(abs(a - b) for a, b in gaps) < 1e-5
    table = (tmp_path / "benchmark.md").read_text()
    assert "| 100 | fp32 |" in table and "GPT2LMHeadModel" in table and "textbook" in table


@pytest.mark.parametrize(("native", "dtypes"), [(True, ["fp32", "bf16"]), (False, ["fp32"])])
def test_bf16_rows_are_left_out_where_bf16_would_be_emulated(
    monkeypatch: pytest.MonkeyPatch, native: bool, dtypes: list[str]
) -> None:
    """Emulated bf16 times the emulation, not the implementations: by default only where the
    CPU has bf16 instructions; ``--dtype bf16`` still asks for it anywhere."""
    monkeypatch.setattr(benchmark, "native_bf16", lambda device: native)
    assert benchmark.parse_args([]).dtype == dtypes
    assert benchmark.parse_args(["--dtype", "bf16"]).dtype == ["bf16"]
