"""The harness of ``attnlab-bench``: contenders train side by side, step for step, in one process.

Every contender gets the same batches and its own AdamW; their steps are interleaved (ours, peer,
ours, ...) so load from other processes hits them alike. A row reports each contender's median
step time as items/s (tokens, or images for the ViT), MFU where the FLOPs are known, the ratio
of ours to the fastest peer, and the largest gap between the losses of ours and that peer, step
by step: starting from the same weights, equal losses show equal learning, so any gap in time is
speed alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.callbacks.throughput import matmul_peak_flops, synchronize
from attnlab.models.lm import count_parameters

DTYPES = {"fp32": None, "bf16": torch.bfloat16}
NUM_BATCHES = 4  # distinct batches cycled through, so the losses show learning, not memorising
LossFn = Callable[[nn.Module, Any], Tensor]  # (model, batch) -> loss
Contenders = dict[str, tuple[nn.Module, LossFn]]  # "ours" first, our other paths (ours_*), peers


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch: Any,
    device: torch.device,
    dtype: torch.dtype | None,
) -> tuple[float, float]:
    """One forward, backward and optimizer step: (seconds, loss)."""
    synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return time.perf_counter() - start, loss.item()


def race(
    contenders: Contenders,
    batches: list,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype | None,
) -> dict[str, dict]:
    """Interleaved training steps of every contender: step seconds and losses of each."""
    optimizers = {
        name: torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, fused=True)
        for name, (model, _) in contenders.items()
    }
    runs = {name: {"step_seconds": [], "losses": []} for name in contenders}
    for i in range(args.warmup + args.iters):
        batch = batches[i % len(batches)]
        for name, (model, loss_fn) in contenders.items():
            seconds, loss = train_step(model, optimizers[name], loss_fn, batch, device, dtype)
            runs[name]["losses"].append(loss)
            if i >= args.warmup:
                runs[name]["step_seconds"].append(seconds)
    return runs


def compare(
    contenders: Contenders,
    batches: list,
    items_per_batch: float,
    flops_per_item: int | None,
    args: argparse.Namespace,
    device: torch.device,
    dtype_name: str,
) -> dict[str, Any]:
    """Race the contenders in ``dtype_name``: a report row (see the module docstring). MFU is
    against the best of matmul probes in the step's dtype before and after the race (a probe
    under a burst of load reads low)."""
    dtype = DTYPES[dtype_name]
    peak = matmul_peak_flops(device, dtype or torch.float32) if flops_per_item else None
    runs = race(contenders, batches, args, device, dtype)
    if peak is not None:
        peak = max(peak, matmul_peak_flops(device, dtype or torch.float32))
    results = {}
    for name, run in runs.items():
        per_s = items_per_batch / statistics.median(run["step_seconds"])
        mfu = per_s * flops_per_item / peak if peak else None
        params = count_parameters(contenders[name][0])
        results[name] = {**run, "params": params, "items_per_s": per_s, "mfu": mfu}
    peers = (n for n in results if not n.startswith("ours"))  # ours_*: our other paths
    best = max(peers, key=lambda n: results[n]["items_per_s"])
    gaps = zip(results["ours"]["losses"], results[best]["losses"], strict=True)
    return {
        "dtype": dtype_name,
        "flops_per_item": flops_per_item,
        "peak_flops": peak,
        "best_peer": best,
        "ratio": results["ours"]["items_per_s"] / results[best]["items_per_s"],
        "max_loss_gap": max(abs(a - b) for a, b in gaps),
        "contenders": results,
    }
