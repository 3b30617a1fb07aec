"""After each validation, continue fixed prompts with the language model and keep the text.

Writes ``<run dir>/samples/epochNNN.txt`` and, with a W&B logger, a table prompt -> sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from attnlab.utils.media import log_table


class TextSamples(L.Callback):
    def __init__(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 30,
        temperature: float = 0.8,
        top_k: int | None = 40,
        seed: int = 0,
    ) -> None:
        self.prompts = list(prompts)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        tokenizer = pl_module.data.tokenizer
        rows = []
        with torch.random.fork_rng(devices=[]):  # sampling must not shift the training RNG
            torch.manual_seed(self.seed)
            for prompt in self.prompts:
                ids = torch.tensor(tokenizer.encode([prompt]))
                out = pl_module.sample(
                    ids, self.max_new_tokens, temperature=self.temperature, top_k=self.top_k
                )
                rows.append([prompt, tokenizer.decode(out[0, ids.size(1) :].tolist())])
        path = Path(trainer.default_root_dir) / "samples" / f"epoch{trainer.current_epoch:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{prompt} >>> {sample}\n" for prompt, sample in rows))
        log_table(trainer, "val/samples", ["prompt", "sample"], rows)
