"""After each validation, show how attention pooling weighs the tokens of fixed examples.

Writes ``<run dir>/attention/epochNNN.png`` and, with a W&B logger, a table of the examples
with their tokens coloured by weight (``wandb.Html``) plus the image.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from attnlab.utils.media import log_image, log_table, wandb_loggers
from attnlab.viz import plot_token_weights, tokens_html


class TokenAttentionPlot(L.Callback):
    def __init__(self, num_examples: int = 8, every_n_epochs: int = 1) -> None:
        self.num_examples = num_examples
        self.every_n_epochs = every_n_epochs

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        data = pl_module.data
        batch = data.first(self.num_examples)
        with torch.no_grad():
            logits, weights = pl_module(
                batch["input_ids"].to(pl_module.device),
                batch["attention_mask"].to(pl_module.device),
            )
        names = data.class_names
        predictions = logits.argmax(-1).tolist()
        labels = batch["labels"].tolist()
        lengths = batch["attention_mask"].sum(-1).tolist()
        rows, table = [], []
        for ids, label, length, pred, w in zip(
            batch["input_ids"], labels, lengths, predictions, weights.float().cpu(), strict=True
        ):
            tokens = data.tokenizer.tokens(ids[:length].tolist())
            token_weights = w[:length].tolist()
            title = f"true {names[label]} | predicted {names[pred]}"
            rows.append((tokens, token_weights, title))
            table.append([names[label], names[pred], tokens_html(tokens, token_weights)])
        out = Path(trainer.default_root_dir) / "attention" / f"epoch{trainer.current_epoch:03d}.png"
        plot_token_weights(rows, out)
        if wandb_loggers(trainer):
            import wandb

            html_rows = [[t, p, wandb.Html(h)] for t, p, h in table]
            log_table(trainer, "val/attention", ["label", "prediction", "tokens"], html_rows)
            log_image(trainer, "val/attention_png", out)
