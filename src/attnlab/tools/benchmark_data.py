"""Text data at scale: our token cache against the pipeline a user would otherwise write.

The embedded Wikipedia articles are replicated K times into a local jsonl. For each K and each
pipeline, fresh processes measure: cold set-up (no cache), warm set-up (cache present), both to
the first training batch; peak RSS once every cached token has been read; cache size on disk;
and training examples/s through the loader with 0 and 2 workers. Ours are ``bert_mlm``
(segments), ``bert_mlm_nsp`` (pairs) and ``lm_transformer`` (blocks), configured as the
experiments are; the peer is Hugging Face ``datasets.map`` tokenization (``num_proc=2``) +
``group_texts`` + ``DataCollatorForLanguageModeling``, with the same tokenizer and sequence
length (it has no NSP pairs). Every pipeline uses the pinned vocabulary ``wiki-wordpiece-8k``.
``--pipelines translation_attention`` measures the parallel corpus the same way (the embedded
verse pairs K times as a .tsv, its two tokenizers trained on it, then its pair cache; it has no
peer).

    attnlab-bench-data --replicas 1 10 40 100

Prints a markdown table and writes ``<paths.output_root>/benchmarks/data.json``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnlab.errors import command  # light: the measured processes import the rest themselves

OURS = ("bert_mlm", "bert_mlm_nsp", "lm_transformer")
PEER = "hf_datasets"
TRANSLATION = "translation_attention"  # the embedded verse pairs replicated K times, as a .tsv
SEQ_LEN = 128
BATCH = 32
VOCAB = "wiki-wordpiece-8k"


def write_corpus(replicas: int, path: Path) -> None:
    """The embedded articles, ``replicas`` times, one ``{"sentences": [...]}`` per line."""
    from attnlab.data.sources import EMBEDDED_DIR

    with gzip.open(EMBEDDED_DIR / "wiki_articles.jsonl.gz", "rt") as file:
        lines = [json.dumps({"sentences": json.loads(line)["sentences"]}) for line in file]
    with path.open("w") as out:
        for _ in range(replicas):
            out.write("\n".join(lines) + "\n")


def write_pairs(replicas: int, path: Path) -> None:
    """The embedded English/French verses, ``replicas`` times, as a headed ``en<TAB>fr`` .tsv."""
    from attnlab.data.sources import EMBEDDED_DIR

    with gzip.open(EMBEDDED_DIR / "bible_en_fr.tsv.gz", "rt") as file:
        header, *rows = file.read().splitlines()
    columns = header.split("\t")
    en, fr = columns.index("en"), columns.index("fr")
    lines = "".join(f"{r.split(chr(9))[en]}\t{r.split(chr(9))[fr]}\n" for r in rows)
    with path.open("w") as out:  # one copy at a time: the measured processes are forked from
        out.write("en\tfr\n")  # this one and inherit its peak RSS (ru_maxrss)
        for _ in range(replicas):
            out.write(lines)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _loader_rate(loader: Any, batches: int) -> float:
    """Examples/s over ``batches`` batches, after the first (workers start there)."""
    iterator = iter(loader)
    next(iterator)
    start, count = time.perf_counter(), 0
    for _, batch in zip(range(batches), iterator, strict=False):
        count += len(batch["src_ids" if "src_ids" in batch else "input_ids"])
    return count / (time.perf_counter() - start)


def _ours(experiment: str, corpus: Path, cache: Path, workers: int) -> Callable[[], tuple]:
    """The experiment's DataModule set-up, its config composed beforehand (reading the command
    line, not the data: untimed, like the peer's script arguments)."""
    from hydra.utils import instantiate

    from attnlab.utils.config import compose_config

    overrides = [
        f"experiment={experiment}",
        f"data.source.files={corpus}",
        "data.source.embedded=null",
        f"data.num_workers={workers}",
        f"paths.cache_dir={cache}",
    ]
    if experiment != TRANSLATION:  # translation trains its two tokenizers on the corpus
        length = "data.block_size" if experiment.startswith("lm") else "data.max_seq_length"
        overrides += [f"data.tokenizer.vocab={VOCAB}", f"data.batch_size={BATCH}"]
        overrides.append(f"{length}={SEQ_LEN}")
    config = compose_config(overrides).data

    def set_up() -> tuple[Any, Any]:
        datamodule = instantiate(config)
        datamodule.setup("fit")
        return datamodule, datamodule.train_dataloader()

    return set_up


def _peer(experiment: str, corpus: Path, cache: Path, workers: int) -> Callable[[], tuple]:
    return functools.partial(_peer_set_up, corpus, cache, workers)


def _peer_set_up(corpus: Path, cache: Path, workers: int) -> tuple[Any, Any]:
    """What a user writes with the field's libraries: the HF course's MLM recipe."""
    import datasets
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from attnlab.data.tokenization import build_tokenizer

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer([], cache, vocab=VOCAB).tokenizer,
        pad_token="[PAD]",
        mask_token="[MASK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
    )
    raw = datasets.load_dataset("json", data_files=str(corpus), cache_dir=str(cache / "hf"))
    tokenized = raw.map(
        lambda batch: tokenizer([" ".join(s) for s in batch["sentences"]]),
        batched=True,
        num_proc=2,
        remove_columns=["sentences"],
    )

    def group_texts(batch: dict[str, list]) -> dict[str, list]:
        joined = {k: list(itertools.chain.from_iterable(v)) for k, v in batch.items()}
        total = len(joined["input_ids"]) // SEQ_LEN * SEQ_LEN
        return {
            k: [v[i : i + SEQ_LEN] for i in range(0, total, SEQ_LEN)] for k, v in joined.items()
        }

    blocks = tokenized.map(group_texts, batched=True, num_proc=2)["train"]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    loader = DataLoader(blocks, BATCH, shuffle=True, num_workers=workers, collate_fn=collator)
    return blocks, loader


def _read_all(data: Any) -> tuple[int, int]:
    """Read every cached token once (as an epoch does), so peak RSS counts the mapped pages;
    (training tokens, all tokens)."""
    if hasattr(data, "examples") and not hasattr(data, "splits"):  # translation: packed pairs
        sizes = {n: len(e.sources.tokens) + len(e.targets.tokens) for n, e in data.examples.items()}
        return sizes["train"], sum(sizes.values())
    if hasattr(data, "splits"):
        for split in data.splits.values():
            split.tokens.sum()
        return data.splits["train"].num_tokens, sum(s.num_tokens for s in data.splits.values())
    data.with_format("numpy")["input_ids"]  # the peer's Arrow table, every block
    return len(data) * SEQ_LEN, len(data) * SEQ_LEN


def _import_libraries(pipeline: str) -> None:
    """What a training process imports before its data: its trainer (transformers' for the
    peer, Lightning for ours) and its data libraries."""
    if pipeline == PEER:
        import datasets  # noqa: F401
        from transformers import Trainer  # noqa: F401

        return
    import attnlab.utils.config  # noqa: F401

    if pipeline == TRANSLATION:
        import attnlab.data.parallel_corpus  # noqa: F401
    else:
        import attnlab.data.bert_pairs  # noqa: F401
        import attnlab.data.text_corpus  # noqa: F401


def measure(pipeline: str, corpus: Path, cache: Path, workers: int, batches: int) -> dict:
    """One fresh process's figures (run as ``--measure``)."""
    _import_libraries(pipeline)  # what a training process imports anyway is not timed
    libraries_mb = _peak_rss_mb()
    set_up = (_peer if pipeline == PEER else _ours)(pipeline, corpus, cache, workers)
    start = time.perf_counter()
    data, loader = set_up()
    next(iter(loader))
    setup_s = time.perf_counter() - start
    train_tokens, tokens = _read_all(data)
    return {
        "setup_s": setup_s,
        "train_tokens": train_tokens,
        "tokens": tokens,
        "examples_per_s": _loader_rate(loader, batches),
        "rss_mb": _peak_rss_mb(),
        "libraries_mb": libraries_mb,
    }


def _run(pipeline: str, corpus: Path, cache: Path, workers: int, batches: int) -> dict:
    argv = [sys.executable, "-m", __spec__.name, "--measure", pipeline, str(corpus), str(cache)]
    argv += ["--workers", str(workers), "--batches", str(batches)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache / "hf"), "TOKENIZERS_PARALLELISM": "true"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{pipeline} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def benchmark(replicas: list[int], pipelines: list[str], batches: int, work: Path) -> list[dict]:
    rows = []
    for k in replicas:
        corpus, pairs = work / f"wiki_x{k}.jsonl", work / f"verses_x{k}.tsv"
        write_corpus(k, corpus)
        write_pairs(k, pairs)
        for pipeline in pipelines:
            cache = work / f"cache_{pipeline}_{k}"
            shutil.rmtree(cache, ignore_errors=True)
            source = pairs if pipeline == TRANSLATION else corpus
            cold = _run(pipeline, source, cache, 0, batches)
            warm = _run(pipeline, source, cache, 0, batches)
            two = _run(pipeline, source, cache, 2, batches)
            sizes = cache / {PEER: "hf", TRANSLATION: "pairs"}.get(pipeline, "tokens")
            row = {
                "K": k,
                "pipeline": pipeline,
                "tokens": cold["train_tokens"],
                "cold_s": cold["setup_s"],
                "warm_s": warm["setup_s"],
                "rss_mb": warm["rss_mb"],
                "data_rss_mb": warm["rss_mb"] - warm["libraries_mb"],
                "cold_data_rss_mb": cold["rss_mb"] - cold["libraries_mb"],
                "cache_mb": _size_mb(sizes),
                "ex_s_0": warm["examples_per_s"],
                "ex_s_2": two["examples_per_s"],
                "tokens_per_s_cold": cold["tokens"] / cold["setup_s"],
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            shutil.rmtree(cache, ignore_errors=True)
        corpus.unlink()
        pairs.unlink()
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| K | pipeline | train tokens | cold set-up s | tokens/s cold | warm set-up s "
        "| peak RSS GB | RSS above imports MB | the same, cold | cache MB | ex/s 0 workers "
        "| ex/s 2 workers |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['K']} | {r['pipeline']} | {r['tokens'] / 1e6:.1f}M | {r['cold_s']:.1f} "
            f"| {r['tokens_per_s_cold'] / 1e3:.0f}k | {r['warm_s']:.2f} | {r['rss_mb'] / 1024:.2f} "
            f"| {r['data_rss_mb']:.0f} | {r['cold_data_rss_mb']:.0f} | {r['cache_mb']:.0f} "
            f"| {r['ex_s_0']:.0f} "
            f"| {r['ex_s_2']:.0f} |"
        )
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 10, 40, 100])
    parser.add_argument("--pipelines", nargs="+", default=[*OURS, PEER])
    parser.add_argument("--batches", type=int, default=500, help="batches timed per loader")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--measure", nargs=3, metavar=("PIPELINE", "CORPUS", "CACHE"))
    args = parser.parse_args(argv)
    if args.measure:
        pipeline, corpus, cache = args.measure
        print(json.dumps(measure(pipeline, Path(corpus), Path(cache), args.workers, args.batches)))
        return []
    with tempfile.TemporaryDirectory(prefix="attnlab-bench-data-") as work:
        rows = benchmark(args.replicas, args.pipelines, args.batches, Path(work))
    print(table(rows))
    from attnlab.utils.config import compose_config

    out = Path(compose_config().paths.output_root) / "benchmarks" / "data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
