"""Training throughput: samples/s, tokens/s and model FLOPs utilisation (MFU), every N steps.

Model FLOPs of a training step (forward + backward = 3 x forward), per token of length-T inputs:

    6 * N + 12 * sum_layers(d_model) * T

``N`` counts the weights of the ``nn.Linear`` layers (2 FLOPs per weight per token forward, 4
backward); the second term is attention's Q K^T and A V (2 * 2 * T * d per token per layer
forward). Embedding lookups are not matmuls and count 0; a decoder tied to an embedding (BERT's
MLM head, which runs on the masked ~15% of the tokens only) is left out, so BERT's MFU is a
slight underestimate. MFU = achieved model FLOP/s / peak FLOP/s, where the peak is ``peak_flops``
(a datasheet number, e.g. 989e12 for an H100's bf16) or, when that is null, the best FLOP/s of a
large matmul in the training dtype measured once on the device (an attainable peak).

Lightning's ``ThroughputMonitor`` needs the peak from its GPU table (none for CPUs) and FLOPs from
``measure_flops``, whose counter sees no FLOPs in torch's CPU attention kernel; hence this meter.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from attnlab.models.multi_head import MultiHeadAttention

PRECISION_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}  # prefix of trainer.precision


def precision_dtype(precision: str | int | None) -> torch.dtype:
    """The matmul dtype of a Lightning precision: "bf16-mixed" -> bfloat16, "32-true" -> fp32."""
    prefix = str(precision).split("-")[0]
    return PRECISION_DTYPES.get(prefix, torch.float32)


def model_flops_per_token(net: nn.Module, seq_len: int) -> int:
    """Training FLOPs per token of ``net`` on length-``seq_len`` inputs (formula above)."""
    tied = {
        id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)
    }  # a Linear sharing one of these is a tied decoder
    linear = sum(
        m.weight.numel()
        for m in net.modules()
        if isinstance(m, nn.Linear) and id(m.weight) not in tied
    )
    widths = sum(
        m.d_model if isinstance(m, MultiHeadAttention) else m.embed_dim
        for m in net.modules()
        if isinstance(m, (MultiHeadAttention, nn.MultiheadAttention))
    )
    return 6 * linear + 12 * widths * seq_len


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(
    device: torch.device,
    dtype: torch.dtype,
    size: int = 1024,
    repeats: int = 10,
    budget_s: float = 0.5,
) -> float:
    """The best FLOP/s of a (size x size) @ (size x size) matmul: an attainable peak. Repeats stop
    once ``budget_s`` is spent: a dtype the device only emulates (bf16 on an AVX2-only CPU, ~200x
    slower than fp32) then costs one matmul of a few seconds, not ``repeats`` of them."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, spent = float("inf"), 0.0
    for attempt in range(1 + repeats):  # the first is a warm-up (kernel selection, allocation)
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        seconds = time.perf_counter() - start
        spent += seconds
        if attempt > 0 or spent > budget_s:  # the warm-up counts only if it alone spent it
            best = min(best, seconds)
        if spent > budget_s:
            break
    return 2 * size**3 / best


def batch_sizes(batch: Any, tokens_key: str | None) -> tuple[int, Tensor | None]:
    """(samples, the token tensor (B, T) or None) of a dict batch or a tuple batch."""
    if isinstance(batch, dict):
        tokens = batch.get(tokens_key) if tokens_key else None
        first = next(v for v in batch.values() if isinstance(v, Tensor))
    else:
        first, tokens = batch[0], None
    return first.size(0), tokens


class ThroughputMeter(L.Callback):
    """Logs ``throughput/samples_per_sec``, ``tokens_per_sec``, ``model_tflops_per_sec`` and
    ``mfu`` over windows of ``every_n_steps`` training batches (data loading included), to the
    trainer's loggers at step = optimizer steps so far.

    Tokens are the (B, T) positions of ``batch[tokens_key]`` (padding included, as usual in
    tokens/s); batches without it (images) log samples/s only.
    """

    def __init__(
        self,
        every_n_steps: int = 10,
        peak_flops: float | None = None,
        tokens_key: str | None = "input_ids",
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps} must be >= 1")
        if peak_flops is not None and peak_flops <= 0:
            raise ValueError(f"peak_flops={peak_flops} must be > 0, or null to measure it")
        self.every_n_steps = every_n_steps
        self.peak_flops = peak_flops
        self.tokens_key = tokens_key
        self._reset()

    def _reset(self) -> None:
        self._start: float | None = None
        self._batches = self._samples = self._tokens = self._flops = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.peak_flops is None:
            dtype = precision_dtype(trainer.precision)
            self.peak_flops = matmul_peak_flops(pl_module.device, dtype)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._start is None:
            synchronize(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        samples, tokens = batch_sizes(batch, self.tokens_key)
        self._batches += 1
        self._samples += samples
        if tokens is not None:
            self._tokens += tokens.numel()
            net = getattr(pl_module, "net", pl_module)
            self._flops += tokens.numel() * model_flops_per_token(net, tokens.size(1))
        if self._batches < self.every_n_steps:
            return
        synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._start
        metrics = {"throughput/samples_per_sec": self._samples / elapsed}
        if self._tokens:
            metrics["throughput/tokens_per_sec"] = self._tokens / elapsed
            metrics["throughput/model_tflops_per_sec"] = self._flops / elapsed / 1e12
            metrics["throughput/mfu"] = self._flops / elapsed / self.peak_flops
        for logger in trainer.loggers:  # not self.log: it would repeat the value at every step
            logger.log_metrics(metrics, step=trainer.global_step)
        self._reset()
