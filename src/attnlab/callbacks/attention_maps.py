"""Self-attention maps of a fixed sentence: a layer x head grid after each validation.

Works with any model that has ``attention_maps(input_ids) -> [(B, H, T, T)] per layer``.
Writes ``<run dir>/attention_maps/epochNNN.png`` and logs it to W&B. At the start of training,
the model's sinusoidal positional-encoding table (if it has one) is plotted once.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from attnlab.utils.media import log_image
from attnlab.viz import plot_attention_grid, plot_matrix


class AttentionMaps(L.Callback):
    def __init__(self, sentence: str, every_n_epochs: int = 1) -> None:
        self.sentence = sentence
        self.every_n_epochs = every_n_epochs

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        table = getattr(getattr(pl_module.net, "positional", None), "pe", None)
        if table is not None:
            out = Path(trainer.default_root_dir) / "positional_encoding.png"
            plot_matrix(table.cpu(), out, "sinusoidal positional encoding", "dimension", "position")
            log_image(trainer, "positional_encoding", out)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        tokenizer = pl_module.data.tokenizer
        ids = torch.tensor(tokenizer.encode([self.sentence]), device=pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            maps = pl_module.net.attention_maps(ids)
        pl_module.train(was_training)
        grid = torch.stack([m[0] for m in maps]).float().cpu()  # (layers, heads, T, T)
        name = f"epoch{trainer.current_epoch:03d}.png"
        out = Path(trainer.default_root_dir) / "attention_maps" / name
        plot_attention_grid(grid, tokenizer.tokens(ids[0].tolist()), out, self.sentence)
        log_image(trainer, "val/attention_maps", out)
