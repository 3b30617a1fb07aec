"""After each validation, what the masked LM guesses for fixed masked validation sentences.

Writes ``<run dir>/masked_predictions/epochNNN.txt`` (each sentence as the model saw it, then per
masked position the true token and the top-k guesses with probabilities) and, with a W&B
logger, the same as a table: sentence, position, true token, top-k. Needs a task with
``top_predictions(batch, k)`` (``BertPretrainingTask``) whose data has a tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from attnlab.data.collate import IGNORE_INDEX
from attnlab.utils.media import log_table


class MaskedPredictions(L.Callback):
    def __init__(self, num_examples: int = 4, top_k: int = 5, every_n_epochs: int = 1) -> None:
        self.num_examples = num_examples
        self.top_k = top_k
        self.every_n_epochs = every_n_epochs

    def rows(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[list[str]]:
        """[sentence, position, true token, "guess (p) ..."] for every masked position."""
        tokenizer = pl_module.data.tokenizer
        batch = pl_module.data.first(self.num_examples)
        was_training = pl_module.training
        pl_module.eval()
        probabilities, ids = (t.cpu() for t in pl_module.top_predictions(batch, self.top_k))
        pl_module.train(was_training)
        rows, index = [], 0
        for inputs, labels, mask in zip(
            batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
        ):
            sentence = " ".join(tokenizer.tokens(inputs[mask].tolist()))
            for position in (labels != IGNORE_INDEX).nonzero().flatten().tolist():
                guesses = tokenizer.tokens(ids[index].tolist())
                top = " ".join(
                    f"{g} ({p:.2f})" for g, p in zip(guesses, probabilities[index], strict=True)
                )
                true = tokenizer.tokens([int(labels[position])])[0]
                rows.append([sentence, str(position), true, top])
                index += 1
        return rows

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        rows = self.rows(trainer, pl_module)
        lines, last = [], None
        for sentence, position, true, top in rows:
            if sentence != last:
                lines.append(f"\n{sentence}\n")
                last = sentence
            lines.append(f"  [{position}] {true:>12} -> {top}\n")
        name = f"epoch{trainer.current_epoch:03d}.txt"
        path = Path(trainer.default_root_dir) / "masked_predictions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines).lstrip())
        columns = ["sentence", "position", "true", f"top-{self.top_k}"]
        log_table(trainer, "val/masked_predictions", columns, rows)
