"""What dropout on the attention weights costs on a CPU: the ViT's train step with and without.

Both models are the ``vit`` experiment's default size with ``dropout=0.1`` on the embeddings and
residual branches; one also drops attention weights (``attention_probs_dropout`` null follows
``dropout``), which torch's fused CPU attention kernel does not take. Forward + backward on one
batch of 128 random 28x28 images, the two interleaved, median of 15 after 3 warm-up steps.

    OMP_NUM_THREADS=2 python scripts/bench_attention_dropout.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from attnlab.models.vit import VisionTransformer

WARMUP, STEPS, BATCH = 3, 15, 128


def main() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    models = {
        attention_probs_dropout: VisionTransformer(
            10, num_layers=6, dropout=0.1, attention_probs_dropout=attention_probs_dropout
        )
        for attention_probs_dropout in (None, 0.0)
    }
    times: dict[float | None, list[float]] = {key: [] for key in models}
    for step in range(WARMUP + STEPS):
        for key, model in models.items():
            start = time.perf_counter()
            model.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            if step >= WARMUP:
                times[key].append(time.perf_counter() - start)
    for key, elapsed in times.items():
        name = (
            "attention_probs_dropout=null (0.1)"
            if key is None
            else f"attention_probs_dropout={key}"
        )
        print(f"{name}: {1000 * statistics.median(elapsed):.0f} ms a step")


if __name__ == "__main__":
    main()
