"""What every DataModule shares: train/validation/test loaders over splits held in memory.

The loaders are resumable (torchdata's ``StatefulDataLoader``): Lightning saves how far the
epoch got in each checkpoint, and a run resumed mid-epoch sees the rest of the same order.
Shuffling and worker seeds come from the loader's own generator (seeded by ``data.seed``), never
from the global random state that dropout draws from, so resuming does not shift it.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Self

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.data.collate import WorkerCollate
from attnlab.data.tokenization import DEFAULT_MAX_LENGTH, TextTokenizer
from attnlab.utils.random_state import random_state, set_random_state

# Workers send their state to the loader every this many batches, not with every batch (a third
# of a 2-worker loader's throughput); a resume between two snapshots replays the batches since
# the last one, so it stays exact.
SNAPSHOT_EVERY_N_STEPS = 16
WORKER_SWITCH_INTERVAL_S = 2e-4

# torchdata 0.11 calls a torch function that torch now flags as deprecated, at every loader built.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


def switch_threads_promptly(worker_id: int) -> None:
    """A loader worker's start: Python switches threads every 0.2 ms instead of 5. Why: the
    worker hands each batch's shared memory to the main process from a thread of its own, which
    otherwise waits up to 5 ms for the GIL behind the next batch's collation (on 2 cores about
    35% more BERT batches a second)."""
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL_S)


class WorkerRandomState(Dataset):
    """A dataset whose state is the random state of the worker reading it. torchdata saves a
    dataset's state with every batch a worker makes and gives it back to that worker on
    resume, so masks and augmentations drawn in workers continue where they stopped."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def state_dict(self) -> dict[str, Any]:
        return random_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_random_state(state)


class SplitDataModule(L.LightningDataModule):
    """Subclasses say how one split is batched (``split_loader``); the loader options the user
    sweeps (``batch_size``, ``num_workers``, ``pin_memory``) are applied the same everywhere."""

    batch_size: int
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0

    def split_loader(self, split: str, train: bool) -> DataLoader:
        """The loader of ``split``; ``train`` turns on shuffling (and augmentation, masking...)."""
        raise NotImplementedError

    def dataloader(self, dataset: Any, **options: Any) -> DataLoader:
        """A resumable DataLoader with the configured workers and pinning (``options`` add the
        rest), its shuffling seeded by ``seed``."""
        if isinstance(dataset, IterableDataset):
            options.pop("shuffle", None)  # a stream shuffles itself, in a buffer of records
        elif self.num_workers > 0:
            dataset = WorkerRandomState(dataset)  # the main process's is in the checkpoint
        if self.num_workers > 0:
            options.setdefault("worker_init_fn", switch_threads_promptly)
            if "collate_fn" in options:
                options["collate_fn"] = WorkerCollate(options["collate_fn"])
        # A loader built anew each epoch (trainer.reload_dataloaders_every_n_epochs) shuffles
        # with that epoch's seed; one kept across epochs draws a new order from it each epoch.
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return StatefulDataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            snapshot_every_n_steps=SNAPSHOT_EVERY_N_STEPS,
            generator=torch.Generator().manual_seed(self.seed + epoch),
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
        max_length = self.tokenizer_args.get("max_length", DEFAULT_MAX_LENGTH)
        self.tokenizer = TextTokenizer.from_str(state["tokenizer"], max_length)
