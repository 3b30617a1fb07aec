"""What every DataModule shares: train/validation/test loaders over splits held in memory."""

from __future__ import annotations

from typing import Any, Self

import lightning as L
from torch.utils.data import DataLoader

from attnlab.data.tokenization import TextTokenizer


class SplitDataModule(L.LightningDataModule):
    """Subclasses say how one split is batched (``split_loader``); the loader options the user
    sweeps (``batch_size``, ``num_workers``, ``pin_memory``) are applied the same everywhere."""

    batch_size: int
    num_workers: int = 0
    pin_memory: bool = False

    def split_loader(self, split: str, train: bool) -> DataLoader:
        """The loader of ``split``; ``train`` turns on shuffling (and augmentation, masking...)."""
        raise NotImplementedError

    def dataloader(self, dataset: Any, **options: Any) -> DataLoader:
        """A DataLoader with the configured workers and pinning (``options`` add the rest)."""
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **options,
        )

    def train_dataloader(self) -> DataLoader:
        return self.split_loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.split_loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.split_loader("test", train=False)


class TokenizedDataModule(SplitDataModule):
    """A DataModule over one text tokenizer: built in ``_load()`` (trained on the train split or
    read from a vocabulary) and saved in checkpoints, so a checkpoint is used without the data."""

    tokenizer: TextTokenizer | None = None
    tokenizer_args: dict[str, Any]

    def _load(self) -> None:
        raise NotImplementedError

    def _ready(self) -> Self:
        if self.tokenizer is None:
            self._load()
        return self

    @property
    def vocab_size(self) -> int:
        return self._ready().tokenizer.vocab_size

    @property
    def pad_id(self) -> int:
        return self._ready().tokenizer.pad_id

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_str()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        max_length = self.tokenizer_args.get("max_length")
        self.tokenizer = TextTokenizer.from_str(state["tokenizer"], max_length)
