"""After each validation, translate fixed validation sentences and show where the decoder looked.

Writes ``<run dir>/alignments/epochNNN.png`` (one heatmap per sentence: target tokens x source
tokens, the cross-attention weights alpha) and, with a W&B logger, logs the image and a table
source / reference / hypothesis. A model without attention gets the table only.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from attnlab.data.collate import texts_from_bytes
from attnlab.data.interface import PairInterface
from attnlab.utils.media import log_image, log_table
from attnlab.viz import plot_alignments


class AlignmentPlots(L.Callback):
    def __init__(self, num_examples: int = 4, max_words: int = 15, every_n_epochs: int = 1) -> None:
        """The first ``num_examples`` validation pairs with at most ``max_words`` source words
        (short ones keep the heatmaps readable)."""
        self.num_examples = num_examples
        self.max_words = max_words
        self.every_n_epochs = every_n_epochs

    def examples(self, data: PairInterface) -> list[tuple[str, str]]:
        """(source, reference) of the short ones among the data's fixed validation pairs."""
        pairs = zip(
            texts_from_bytes(data.examples["source_text"]),
            texts_from_bytes(data.examples["reference_text"]),
            strict=True,
        )
        short = [pair for pair in pairs if len(pair[0].split()) <= self.max_words]
        return short[: self.num_examples]

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        examples = self.examples(pl_module.data)
        if not examples:
            return
        results = pl_module.translate([source for source, _ in examples])
        table = [
            [source, reference, r["translation"]]
            for (source, reference), r in zip(examples, results, strict=True)
        ]
        out = None
        if results[0]["alignment"] is not None:
            rows = [
                (r["alignment"], r["source_tokens"], r["target_tokens"], r["translation"][:90])
                for r in results
                if r["target_tokens"]
            ]
            name = f"epoch{trainer.current_epoch:03d}.png"
            if rows:
                out = plot_alignments(rows, Path(trainer.default_root_dir) / "alignments" / name)
        log_table(trainer, "val/translations", ["source", "reference", "hypothesis"], table)
        if out is not None:
            log_image(trainer, "val/alignments", out)
