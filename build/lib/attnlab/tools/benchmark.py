"""Training throughput against the reference implementations, in one process on the same inputs.

1. Our BERT masked-LM training step (forward, backward, AdamW) against Hugging Face's
   ``BertForMaskedLM`` with the same config and the same initial weights, run with
   ``attn_implementation="sdpa"`` and ``"eager"`` (the faster one is HF's number). Both see the
   same batches and the same optimizer, so their masked-LM losses should agree step by step
   (equal learning); any gap is speed alone. Ours gathers the masked positions (15%) before the
   vocabulary decoder; HF computes logits at every position.
2. Our ``Encoder`` against ``torch.nn.TransformerEncoder`` (post-norm, GELU), same weights.

Steps of the contenders are interleaved (ours, HF sdpa, HF eager, ours, ...) so load from other
processes hits them alike; tokens/s is batch * seq_len / the median step time. MFU uses the FLOPs
formula of ``attnlab.callbacks.throughput``; the peak is the best of matmul probes in the step's
dtype run before and after the timed steps (a probe under a burst of load reads low).
Dropout is 0 so the losses are comparable and only the implementations are timed.

    OMP_NUM_THREADS=2 attnlab-bench [--quick] [--device cpu]

Writes benchmark.json and benchmark.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.callbacks.throughput import matmul_peak_flops, model_flops_per_token, synchronize
from attnlab.errors import command
from attnlab.models.bert import BertForPreTraining, export_hf_bert_state_dict
from attnlab.models.lm import count_parameters
from attnlab.models.transformer import Encoder
from attnlab.utils.hardware import device_name
from attnlab.utils.script_args import parse_key_values

IGNORE_INDEX = -100
MASK_ID = 3  # any id: the inputs are random tokens
MASK_FRACTION = 0.15
NUM_BATCHES = 4  # distinct batches cycled through, so the losses show learning, not memorising
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
HF_IMPLS = ("sdpa", "eager")
LossFn = Callable[[nn.Module, Any], Tensor]  # (model, batch) -> loss


def mlm_batches(args: argparse.Namespace, vocab: int, device: torch.device) -> list[dict]:
    """Random token batches with 15% of the positions masked (labels -100 elsewhere)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(NUM_BATCHES):
        ids = torch.randint(5, vocab, (args.batch, args.seq_len), generator=generator)
        masked = torch.rand(args.batch, args.seq_len, generator=generator) < MASK_FRACTION
        labels = ids.masked_fill(~masked, IGNORE_INDEX)
        batch = {
            "input_ids": ids.masked_fill(masked, MASK_ID),
            "attention_mask": torch.ones_like(ids),
            "labels": labels,
        }
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def build_berts(args: argparse.Namespace, vocab: int, device: torch.device) -> dict[str, nn.Module]:
    """Ours and HF's (one per attention implementation), all starting from our initial weights."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    ours = BertForPreTraining(
        vocab,
        d_model=args.hidden,
        num_heads=args.heads,
        num_layers=args.layers,
        d_ff=args.intermediate,
        max_len=args.seq_len,
        dropout=0.0,
        attn_impl="sdpa",
    )
    weights = export_hf_bert_state_dict(ours)
    models = {"ours": ours}
    for impl in HF_IMPLS:
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.intermediate,
            max_position_embeddings=args.seq_len,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-12,
            attn_implementation=impl,
        )
        hf = BertForMaskedLM(config)
        missing, _ = hf.load_state_dict(weights, strict=False)  # extra: pooler and NSP head
        if missing:
            raise RuntimeError(f"HF BertForMaskedLM got no weights for {missing}")
        models[f"hf_{impl}"] = hf
    return {name: model.to(device).train() for name, model in models.items()}


def ours_mlm_loss(model: nn.Module, batch: dict) -> Tensor:
    masked = batch["labels"] != IGNORE_INDEX
    mask = batch["attention_mask"].bool()
    logits, _ = model(batch["input_ids"], attention_mask=mask, masked_positions=masked)
    return F.cross_entropy(logits.float(), batch["labels"][masked])


def hf_mlm_loss(model: nn.Module, batch: dict) -> Tensor:
    return model(**batch).loss


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
    contenders: dict[str, tuple[nn.Module, LossFn]],
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


def summarise(run: dict, tokens: int, flops_per_token: int, peak: float, params: int) -> dict:
    tokens_per_s = tokens / statistics.median(run["step_seconds"])
    return {
        **run,
        "params": params,
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * flops_per_token / peak,
    }


def bench_bert(args: argparse.Namespace, vocab: int, dtype_name: str, device: torch.device) -> dict:
    dtype = DTYPES[dtype_name]
    models = build_berts(args, vocab, device)
    loss_fns = {name: ours_mlm_loss if name == "ours" else hf_mlm_loss for name in models}
    peak_before = matmul_peak_flops(device, dtype or torch.float32)
    runs = race(
        {n: (m, loss_fns[n]) for n, m in models.items()},
        mlm_batches(args, vocab, device),
        args,
        device,
        dtype,
    )
    flops = model_flops_per_token(models["ours"], args.seq_len)
    peak = max(peak_before, matmul_peak_flops(device, dtype or torch.float32))  # load dips
    tokens = args.batch * args.seq_len
    result = {
        name: summarise(run, tokens, flops, peak, count_parameters(models[name]))
        for name, run in runs.items()
    }
    hf_best = max(HF_IMPLS, key=lambda impl: result[f"hf_{impl}"]["tokens_per_s"])
    best = result[f"hf_{hf_best}"]
    loss_gap = max(abs(a - b) for a, b in zip(runs["ours"]["losses"], best["losses"], strict=True))
    return {
        "vocab_size": vocab,
        "dtype": dtype_name,
        "flops_per_token": flops,
        "peak_flops": peak,
        "hf_best": hf_best,
        "ratio": result["ours"]["tokens_per_s"] / best["tokens_per_s"],
        "max_loss_gap": loss_gap,
        **result,
    }


def bench_encoder(args: argparse.Namespace, dtype_name: str, device: torch.device) -> dict:
    """Our Encoder against torch.nn.TransformerEncoder: same weights, same inputs."""
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    sizes = (args.hidden, args.heads, args.intermediate)
    layer = nn.TransformerEncoderLayer(
        *sizes, dropout=0.0, activation="gelu", layer_norm_eps=1e-12, batch_first=True
    )
    reference = nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
    ours = Encoder(
        args.layers, *sizes, dropout=0.0, activation="gelu", layer_norm_eps=1e-12, attn_impl="sdpa"
    )
    for mine, theirs in zip(ours.layers, reference.layers, strict=True):
        mine.load_torch_layer(theirs)
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.randn(args.batch, args.seq_len, args.hidden, generator=generator).to(device)
        for _ in range(NUM_BATCHES)
    ]
    padding = torch.zeros(args.batch, args.seq_len, dtype=torch.bool, device=device)

    def ours_loss(model: nn.Module, x: Tensor) -> Tensor:
        return model(x, mask=~padding)[0].float().pow(2).mean()

    def torch_loss(model: nn.Module, x: Tensor) -> Tensor:
        return model(x, src_key_padding_mask=padding).float().pow(2).mean()

    contenders = {
        "ours": (ours.to(device).train(), ours_loss),
        "torch": (reference.to(device).train(), torch_loss),
    }
    peak_before = matmul_peak_flops(device, dtype or torch.float32)
    runs = race(contenders, inputs, args, device, dtype)
    flops = model_flops_per_token(ours, args.seq_len)
    peak = max(peak_before, matmul_peak_flops(device, dtype or torch.float32))
    tokens = args.batch * args.seq_len
    params = count_parameters(ours)
    result = {name: summarise(run, tokens, flops, peak, params) for name, run in runs.items()}
    return {
        "dtype": dtype_name,
        "ratio": result["ours"]["tokens_per_s"] / result["torch"]["tokens_per_s"],
        "max_loss_gap": max(
            abs(a - b) for a, b in zip(runs["ours"]["losses"], runs["torch"]["losses"], strict=True)
        ),
        **result,
    }


def markdown(meta: dict, berts: list[dict], encoders: list[dict]) -> str:
    lines = [
        "# attnlab vs Hugging Face / torch: training throughput",
        "",
        f"{meta['device_name']}, {meta['threads']} threads, load average {meta['load_average']}; "
        f"torch {meta['torch']}, transformers {meta['transformers']}. hidden {meta['hidden']}, "
        f"{meta['layers']} layers, {meta['heads']} heads, intermediate {meta['intermediate']}, "
        f"seq {meta['seq_len']}, batch {meta['batch']}; median of {meta['iters']} steps after "
        f"{meta['warmup']} warm-up.",
        "",
        "BERT masked-LM step (forward + backward + AdamW), tokens/s:",
        "",
        "| vocab | dtype | ours | HF sdpa | HF eager | ours / best HF | MFU ours | MFU HF "
        "| max loss gap |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in berts:
        hf_mfu = r[f"hf_{r['hf_best']}"]["mfu"]
        lines.append(
            f"| {r['vocab_size']} | {r['dtype']} | {r['ours']['tokens_per_s']:,.0f} "
            f"| {r['hf_sdpa']['tokens_per_s']:,.0f} | {r['hf_eager']['tokens_per_s']:,.0f} "
            f"| {r['ratio']:.2f}x | {r['ours']['mfu']:.1%} | {hf_mfu:.1%} "
            f"| {r['max_loss_gap']:.2e} |"
        )
    lines += [
        "",
        "Encoder step, tokens/s:",
        "",
        "| dtype | ours | torch.nn.TransformerEncoder | ours / torch | max loss gap |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in encoders:
        lines.append(
            f"| {r['dtype']} | {r['ours']['tokens_per_s']:,.0f} "
            f"| {r['torch']['tokens_per_s']:,.0f} | {r['ratio']:.2f}x | {r['max_loss_gap']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--vocab", type=int, nargs="+", default=[8192, 30522])
    parser.add_argument("--dtype", nargs="+", choices=tuple(DTYPES), default=list(DTYPES))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW's, for both")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="first vocab only, 1 + 3 steps")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/benchmark"))
    args = parse_key_values(parser, sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.vocab, args.warmup, args.iters = args.vocab[:1], 1, 3
    return args


@command
def main(argv: list[str] | None = None) -> dict:
    import transformers

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    meta = {
        **{k: v for k, v in vars(args).items() if k not in ("out", "quick", "threads")},
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    berts = [bench_bert(args, vocab, dtype, device) for vocab in args.vocab for dtype in args.dtype]
    encoders = [bench_encoder(args, dtype, device) for dtype in args.dtype]
    report = {"meta": meta, "bert_mlm": berts, "encoder": encoders}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(report, indent=2))
    table = markdown(meta, berts, encoders)
    (args.out / "benchmark.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'benchmark.json'} and {args.out / 'benchmark.md'}")
    return report


if __name__ == "__main__":
    main()
