"""The throughput meter: the FLOPs formula against torch's FLOP counter, and a tiny BERT run that
logs positive tokens/s and an MFU in (0, 1]."""

from __future__ import annotations

import pytest
import torch
from conftest import read_metrics_csv
from torch.utils.flop_counter import FlopCounterMode

from attnlab import pipeline
from attnlab.callbacks.throughput import (
    ThroughputMeter,
    matmul_peak_flops,
    model_flops_per_token,
    precision_dtype,
)
from attnlab.models.transformer import Encoder, EncoderConfig


def test_flops_formula_matches_the_counted_flops_of_a_training_step() -> None:
    """6 N + 12 L d T per token is exact for an encoder (math attention: the counter sees it)."""
    encoder = Encoder(EncoderConfig(2, 32, 4, 64, dropout=0.0, attn_impl="math", fused_qkv=False))
    x = torch.randn(3, 10, 32, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        encoder(x)[0].sum().backward()
    # the counter also counts the gradient of the input x: 2 * (N_linear of the first matmuls)
    expected = x.shape[0] * x.shape[1] * model_flops_per_token(encoder, 10)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.15)
    assert counter.get_total_flops() <= expected


def test_peak_probe_and_precision_dtypes() -> None:
    assert matmul_peak_flops(torch.device("cpu"), torch.float32, size=128) > 1e6
    assert precision_dtype("bf16-mixed") == torch.bfloat16
    assert precision_dtype("16-mixed") == torch.float16
    assert precision_dtype("32-true") == torch.float32
    with pytest.raises(ValueError, match="every_n_steps=0"):
        ThroughputMeter(every_n_steps=0)


def test_the_peak_probe_stops_at_its_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where bf16 is emulated (~200x slower than fp32) ten 1024^3 probes took 35 s: past the
    budget the probe stops, so a matmul that alone exceeds it is timed once."""
    calls = []
    slow = torch.Tensor.__matmul__

    def counted(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return slow(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", counted)
    assert matmul_peak_flops(torch.device("cpu"), torch.float32, size=64, budget_s=0) > 0
    assert len(calls) == 1
    calls.clear()
    matmul_peak_flops(torch.device("cpu"), torch.float32, size=64, repeats=4, budget_s=60)
    assert len(calls) == 5  # a warm-up and the four repeats


def test_a_tiny_bert_run_logs_tokens_per_second_and_mfu(compose, tmp_path) -> None:
    cfg = compose(
        [
            "experiment=bert_mlm",
            "callbacks=[default,throughput]",
            "callbacks.throughput.every_n_steps=2",
            "logger=csv",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=4",
            "trainer.log_every_n_steps=1",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "data.batch_size=4",
            "data.max_seq_length=32",
        ]
    )
    pipeline.train(cfg)
    rows = read_metrics_csv(tmp_path / "run" / "csv" / "version_0" / "metrics.csv")
    logged = [r for r in rows if r.get("throughput/tokens_per_sec")]
    assert [row["step"] for row in logged] == ["2", "4"]  # every 2 optimizer steps
    for row in logged:
        assert float(row["throughput/tokens_per_sec"]) > 0
        assert float(row["throughput/samples_per_sec"]) > 0
        assert 0 < float(row["throughput/mfu"]) <= 1
