"""Training throughput of an LSTM LM and a Transformer LM of the same size, against sequence length.

An RNN must walk the sequence one step at a time; a Transformer processes every position at once
but pays O(T^2) for attention. This measures where each wins: tokens/s of a full training step
(forward, backward, AdamW) at a fixed number of tokens per step, for lengths 32 .. 1024.

Both models have ~5.3M parameters with a vocabulary of 8192: an untied 2-layer LSTM (embed 256,
hidden 256) and a tied 4-layer pre-norm Transformer (d_model 256, 4 heads, d_ff 1024, sdpa).
Dropout is 0 so only the architectures are timed.

    attnlab-bench-rnn --device cpu,cuda [--dtype bf16] [--quick]

Writes results.json, results.md and tokens_per_s.png to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import matplotlib
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.errors import command
from attnlab.models.lm import TransformerLM, count_parameters
from attnlab.models.rnn import RNNLM
from attnlab.utils.hardware import device_name

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

VOCAB = 8192
LENGTHS = (32, 64, 128, 256, 512, 1024)
MODELS = ("lstm", "transformer")


def build_model(name: str, max_len: int) -> nn.Module:
    """The two contenders, sized to within ~1% of each other's parameter count."""
    if name == "lstm":
        return RNNLM(VOCAB, embed_dim=256, hidden_dim=256, num_layers=2, cell="lstm", dropout=0.0)
    return TransformerLM(
        VOCAB, d_model=256, num_heads=4, num_layers=4, d_ff=1024, max_len=max_len, dropout=0.0
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    seq_len: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None,
    warmup: int,
    iters: int,
) -> list[float]:
    """Seconds of each of ``iters`` timed training steps, after ``warmup`` untimed ones."""
    ids = torch.randint(VOCAB, (batch_size, seq_len + 1), device=device)
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def benchmark_device(device: torch.device, args: argparse.Namespace) -> list[dict]:
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name, max(args.lengths)).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for seq_len in args.lengths:
            batch_size = max(1, args.tokens_per_step // seq_len)
            times = time_steps(
                model, optimizer, seq_len, batch_size, device, dtype, args.warmup, args.iters
            )
            speed = batch_size * seq_len / statistics.median(times)
            rows.append(
                {
                    "device": device.type,
                    "model": name,
                    "seq_len": seq_len,
                    "batch_size": batch_size,
                    "params": count_parameters(model),
                    "tokens_per_s": speed,
                    "step_seconds": times,
                }
            )
            print(
                f"{device.type:5s} {name:12s} T={seq_len:5d} B={batch_size:4d} {speed:12,.0f} tok/s"
            )
        del model, optimizer
    return rows


def markdown(meta: dict, rows: list[dict]) -> str:
    speed = {(r["device"], r["model"], r["seq_len"]): r for r in rows}
    lines = [
        "# RNN (LSTM) vs Transformer LM: training throughput",
        "",
        f"torch {meta['torch']}, {meta['threads']} CPU threads, dtype {meta['dtype']}, "
        f"{meta['tokens_per_step']} tokens per step, median of {meta['iters']} steps "
        f"after {meta['warmup']} warm-up.",
        "",
        *(f"- {device}: {name}" for device, name in meta["device_names"].items()),
        "",
        "| device | seq_len | batch | LSTM params | Transformer params | LSTM tok/s "
        "| Transformer tok/s | Transformer / LSTM |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for device in meta["device_names"]:
        for seq_len in meta["lengths"]:
            lstm, transformer = (speed[device, m, seq_len] for m in MODELS)
            ratio = transformer["tokens_per_s"] / lstm["tokens_per_s"]
            lines.append(
                f"| {device} | {seq_len} | {lstm['batch_size']} | {lstm['params']:,} "
                f"| {transformer['params']:,} | {lstm['tokens_per_s']:,.0f} "
                f"| {transformer['tokens_per_s']:,.0f} | {ratio:.2f} |"
            )
    return "\n".join(lines) + "\n"


def plot(meta: dict, rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for device in meta["device_names"]:
        for name in MODELS:
            points = [r for r in rows if r["device"] == device and r["model"] == name]
            ax.plot(
                [r["seq_len"] for r in points],
                [r["tokens_per_s"] for r in points],
                marker="o",
                linestyle="-" if name == "transformer" else "--",
                label=f"{name} ({device})",
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(meta["lengths"], [str(n) for n in meta["lengths"]])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("training tokens / s")
    ax.set_title(f"LSTM vs Transformer LM, {meta['tokens_per_step']} tokens/step, {meta['dtype']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="cpu,cuda", help="comma list; cuda is skipped if absent"
    )
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--tokens-per-step", type=int, default=8192)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2048 tokens/step, 1 warm-up, 5 steps")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/rnn_vs_transformer"))
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens_per_step, args.warmup, args.iters = 2048, 1, 5
    return args


@command
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    for name in args.device.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            print("CUDA is not available: skipping cuda")
            continue
        devices.append(torch.device(name))
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device_names": {d.type: device_name(d) for d in devices},
        "dtype": args.dtype,
        "vocab_size": VOCAB,
        "lengths": args.lengths,
        "tokens_per_step": args.tokens_per_step,
        "warmup": args.warmup,
        "iters": args.iters,
    }
    params = {name: count_parameters(build_model(name, max(args.lengths))) for name in MODELS}
    print(
        f"parameters: {params} (transformer / lstm = {params['transformer'] / params['lstm']:.3f})"
    )
    rows = [row for device in devices for row in benchmark_device(device, args)]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    (args.out / "results.md").write_text(markdown(meta, rows))
    plot(meta, rows, args.out / "tokens_per_s.png")
    print(markdown(meta, rows))
    print(f"wrote {args.out}/results.json, results.md, tokens_per_s.png")


if __name__ == "__main__":
    main()
