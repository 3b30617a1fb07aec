"""Training throughput of every model family against its library peer, in one process.

1. BERT masked-LM step (forward, backward, AdamW) against Hugging Face's ``BertForMaskedLM`` with
   the same config and initial weights, ``attn_implementation="sdpa"`` and ``"eager"`` (the
   faster one is HF's number). Ours gathers the masked positions (15%) before the vocabulary
   decoder; HF computes logits at every position.
2. Our ``Encoder`` against ``torch.nn.TransformerEncoder`` (post-norm, GELU), same weights.
3. The Transformer LM against GPT-2, the ViT against HF's ViT and the RNN seq2seq against the
   textbook loop (``attnlab.tools.bench_peers``).

How contenders race, and what a row reports: ``attnlab.tools.bench_race``. MFU uses the FLOPs
formula of ``attnlab.callbacks.throughput``. Dropout is 0 so the losses are comparable and only
the implementations are timed.

    OMP_NUM_THREADS=2 attnlab-bench [--quick] [--families bert lm ...] [--device cpu]

Writes benchmark.json and benchmark.md to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.callbacks.throughput import model_flops_per_token
from attnlab.data.collate import IGNORE_INDEX
from attnlab.errors import command
from attnlab.hf.bert import export_hf_bert_state_dict
from attnlab.models.bert import BertForPreTraining
from attnlab.models.transformer import Encoder, EncoderConfig
from attnlab.tools import bench_peers
from attnlab.tools.bench_race import DTYPES, NUM_BATCHES, compare
from attnlab.utils.hardware import device_name, native_bf16
from attnlab.utils.script_args import parse_key_values

MASK_ID = 3  # any id: the inputs are random tokens
MASK_FRACTION = 0.15
BATCH_KEYS = ("input_ids", "token_type_ids", "attention_mask", "labels")  # what the MLM step reads
HF_IMPLS = bench_peers.HF_IMPLS


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


def real_batches(experiment: str, args: argparse.Namespace, device: torch.device) -> tuple:
    """The first ``NUM_BATCHES`` training batches of ``experiment``'s own DataModule (the
    embedded data, at the benchmark's batch size and sequence length), its vocabulary size and
    the fraction of padded positions."""
    from hydra.utils import instantiate

    from attnlab.utils.config import compose_config

    length = "data.block_size" if experiment.startswith("lm") else "data.max_seq_length"
    overrides = [f"experiment={experiment}", f"data.batch_size={args.batch}"]
    overrides += [f"{length}={args.seq_len}", "data.num_workers=0"]
    if args.cache_dir:
        overrides.append(f"paths.cache_dir={args.cache_dir}")
    config = compose_config(overrides)
    data = instantiate(config.data)
    data.setup("fit")
    batches = []
    for batch, _ in zip(data.train_dataloader(), range(NUM_BATCHES), strict=False):
        batches.append({k: v.to(device) for k, v in batch.items() if k in BATCH_KEYS})
    masks = [b.get("attention_mask", torch.ones_like(b["input_ids"])) for b in batches]
    padding = 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    return batches, data.tokenizer.vocab_size, padding


def build_berts(
    args: argparse.Namespace, vocab: int, device: torch.device, padded_too: bool = False
) -> dict[str, nn.Module]:
    """Ours and HF's (one per attention implementation), all starting from our initial weights;
    ``padded_too`` adds ours computing the padding as well (``ours_padded``)."""
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
        skip_padding=True,
    )
    weights = export_hf_bert_state_dict(ours)
    models = {"ours": ours}
    if padded_too:
        models["ours_padded"] = copy.deepcopy(ours)
        models["ours_padded"].bert.encoder.skip_padding = False
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
    segments = batch.get("token_type_ids")
    logits, _ = model(batch["input_ids"], segments, mask, masked_positions=masked)
    return F.cross_entropy(logits.float(), batch["labels"][masked])


def hf_mlm_loss(model: nn.Module, batch: dict) -> Tensor:
    return model(**batch).loss


def bert_contenders(models: dict[str, nn.Module]) -> dict:
    return {
        n: (m, ours_mlm_loss if n.startswith("ours") else hf_mlm_loss) for n, m in models.items()
    }


def bench_bert(args: argparse.Namespace, vocab: int, dtype_name: str, device: torch.device) -> dict:
    models = build_berts(args, vocab, device)
    batches = mlm_batches(args, vocab, device)
    flops = model_flops_per_token(models["ours"], args.seq_len)
    tokens = args.batch * args.seq_len
    row = compare(bert_contenders(models), batches, tokens, flops, args, device, dtype_name)
    return {"vocab_size": vocab, **row}


def bench_real(experiment: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """``experiment``'s own batches, each dtype: BERT's MLM step (NSP pairs or segments, with
    their padding) or the LM's blocks, counted in real tokens/s."""
    batches, vocab, padding = real_batches(experiment, args, device)
    real_tokens = sum(int(b.get("attention_mask", b["input_ids"]).bool().sum()) for b in batches)
    per_batch = real_tokens / len(batches)
    if experiment.startswith("lm"):
        contenders, _, _, flops = bench_peers.lm_race(args, vocab, device)
        batches = [bench_peers.lm_batch(b["input_ids"]) for b in batches]
    else:
        models = build_berts(args, vocab, device, padded_too=True)
        contenders, flops = (
            bert_contenders(models),
            model_flops_per_token(models["ours"], args.seq_len),
        )
    rows = []
    for dtype in args.dtype:
        row = compare(contenders, batches, per_batch, flops, args, device, dtype)
        rows.append({"experiment": experiment, "padding": f"{padding:.1%}", **row})
    return rows


def bench_encoder(args: argparse.Namespace, dtype_name: str, device: torch.device) -> dict:
    """Our Encoder against torch.nn.TransformerEncoder: same weights, same inputs."""
    torch.manual_seed(0)
    sizes = (args.hidden, args.heads, args.intermediate)
    layer = nn.TransformerEncoderLayer(
        *sizes, dropout=0.0, activation="gelu", layer_norm_eps=1e-12, batch_first=True
    )
    reference = nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
    ours = Encoder(
        EncoderConfig(
            args.layers,
            *sizes,
            dropout=0.0,
            activation="gelu",
            layer_norm_eps=1e-12,
            attn_impl="sdpa",
        )
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
    flops = model_flops_per_token(ours, args.seq_len)
    return compare(contenders, inputs, args.batch * args.seq_len, flops, args, device, dtype_name)


FAMILIES = {  # family: (title, what is counted, lead columns)
    "bert": ("BERT masked-LM step (forward + backward + AdamW)", "tokens", ("vocab_size",)),
    "encoder": ("Encoder step against torch.nn.TransformerEncoder", "tokens", ()),
    "lm": ("Transformer LM step against GPT2LMHeadModel", "tokens", ()),
    "vit": ("ViT step against ViTForImageClassification", "images", ()),
    "seq2seq": (
        "Seq2seq (additive attention) step against the textbook loop",
        "target tokens",
        (),
    ),
    "bert_real": (
        "BERT masked-LM step on the DataModules' own batches",
        "real (unpadded) tokens",
        ("experiment", "padding"),
    ),
    "lm_real": ("Transformer LM step on lm_transformer's own blocks", "tokens", ("experiment",)),
}
REAL_EXPERIMENTS = {"bert_real": ("bert_mlm_nsp", "bert_mlm"), "lm_real": ("lm_transformer",)}


def family_table(family: str, rows: list[dict]) -> list[str]:
    """One markdown table: items/s of every contender, the ratio, MFU and the loss gap."""
    title, unit, lead = FAMILIES[family]
    names = list(rows[0]["contenders"])
    head = [column.replace("_", " ") for column in lead] + ["dtype", *names]
    head += ["ours / best peer", "MFU ours", "max loss gap"]
    lines = [f"{title}, {unit}/s:", "", "| " + " | ".join(head) + " |"]
    lines.append("| " + " | ".join("---:" if h != "dtype" else "---" for h in head) + " |")
    for row in rows:
        cells = [str(row[column]) for column in lead]
        cells.append(row["dtype"])
        cells += [f"{row['contenders'][n]['items_per_s']:,.0f}" for n in names]
        mfu = row["contenders"]["ours"]["mfu"]
        cells += [f"{row['ratio']:.2f}x", f"{mfu:.1%}" if mfu else "-"]
        cells.append(f"{row['max_loss_gap']:.2e}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(meta: dict, report: dict[str, list[dict]]) -> str:
    lines = [
        "# attnlab vs its library peers: training throughput",
        "",
        f"{meta['device_name']}, {meta['threads']} threads, load average {meta['load_average']}; "
        f"torch {meta['torch']}, transformers {meta['transformers']}. hidden {meta['hidden']}, "
        f"{meta['layers']} layers, {meta['heads']} heads, intermediate {meta['intermediate']}, "
        f"seq {meta['seq_len']}, batch {meta['batch']} (ViT: {meta['vit_batch']} images of "
        f"{meta['image_size']}x{meta['image_size']}, patch {meta['patch_size']}; seq2seq: "
        f"{meta['seq2seq_batch']} pairs of 15-30 tokens); median of "
        f"{meta['iters']} steps after {meta['warmup']} warm-up.",
        "",
    ]
    for family, rows in report.items():
        lines += family_table(family, rows)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--vocab", type=int, nargs="+", default=[8192, 30522])
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=tuple(DTYPES),
        help="default: fp32 and bf16, fp32 alone where the device has no bf16 instructions",
    )
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="sequences a batch")
    parser.add_argument("--families", nargs="+", choices=tuple(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--lm-vocab", type=int, default=8192, help="the Transformer LM's")
    parser.add_argument("--seq2seq-vocab", type=int, default=8000, help="each side's")
    parser.add_argument("--seq2seq-batch", type=int, default=64, help="translation_attention's")
    parser.add_argument("--vit-batch", type=int, default=64, help="images a ViT batch")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--cache-dir", help="paths.cache_dir of the real batches' DataModules")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW's, for both")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="first vocab only, 1 + 3 steps")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/benchmark"))
    args = parse_key_values(parser, sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.vocab, args.warmup, args.iters = args.vocab[:1], 1, 3
    if args.dtype is None:
        args.dtype = default_dtypes(torch.device(args.device))
    return args


def default_dtypes(device: torch.device) -> list[str]:
    """fp32 and bf16; fp32 alone where bf16 would be emulated, which times the emulation (tens
    of times slower matmuls, ours and the peer's alike) rather than either implementation."""
    if native_bf16(device):
        return list(DTYPES)
    print(f"bf16 left out: {device_name(device)} has no bf16 instructions (--dtype bf16 asks)")
    return ["fp32"]


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
        "native_bf16": native_bf16(device),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    races = {
        "lm": lambda: bench_peers.lm_race(args, args.lm_vocab, device),
        "vit": lambda: bench_peers.vit_race(args, device),
        "seq2seq": lambda: bench_peers.seq2seq_race(args, device),
    }
    report = {}
    for family in args.families:
        if family == "bert":
            rows = [bench_bert(args, v, dtype, device) for v in args.vocab for dtype in args.dtype]
        elif family == "encoder":
            rows = [bench_encoder(args, dtype, device) for dtype in args.dtype]
        elif family in REAL_EXPERIMENTS:
            rows = [row for e in REAL_EXPERIMENTS[family] for row in bench_real(e, args, device)]
        else:
            rows = [compare(*races[family](), args, device, dtype) for dtype in args.dtype]
        report[family] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps({"meta": meta, **report}, indent=2))
    table = markdown(meta, report)
    (args.out / "benchmark.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'benchmark.json'} and {args.out / 'benchmark.md'}")
    return {"meta": meta, **report}


if __name__ == "__main__":
    main()
