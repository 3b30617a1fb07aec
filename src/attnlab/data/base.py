"""What every DataModule shares: train/validation/test loaders over splits held in memory.

The loaders are resumable (torchdata's ``StatefulDataLoader``): Lightning saves how far the
epoch got in each checkpoint, and a run resumed mid-epoch sees the rest of the same order.
Shuffling and worker seeds come from the loader's own generator (seeded by ``data.seed``), never
from the global random state that dropout draws from, so resuming does not shift it.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from typing import Any, Self

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.data.collate import WorkerCollate
from attnlab.data.interface import NUM_EXAMPLES, DataInterface, TextInterface, max_length_of
from attnlab.data.tokenization import TextTokenizer
from attnlab.errors import DataError
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


def first_examples(dataset: Any, count: int) -> list[Any]:
    """The first ``count`` examples of a map-style dataset or a stream."""
    if isinstance(dataset, IterableDataset):
        return list(itertools.islice(iter(dataset), count))
    return [dataset[i] for i in range(min(count, len(dataset)))]


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
    """Subclasses say how one split is batched (``split_loader``) and what their ``interface``
    holds; the split and loader options every DataModule has are taken and applied here."""

    def __init__(
        self,
        interface: DataInterface | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 1234,
    ) -> None:
        """``val_fraction``/``test_fraction``: what is carved from the train split for a source
        without those splits; ``seed``: the splits', shuffling's and workers' seed."""
        super().__init__()
        if batch_size < 1:
            raise DataError(f"data.batch_size={batch_size} must be >= 1")
        self.interface = interface or DataInterface()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed

    @property
    def class_names(self) -> list[str]:
        return self.interface.class_names

    @class_names.setter
    def class_names(self, names: list[str]) -> None:
        self.interface.class_names = names

    def split_loader(self, split: str, train: bool) -> DataLoader:
        """The loader of ``split``; ``train`` turns on shuffling (and augmentation, masking...)."""
        raise NotImplementedError

    def batch(self, split: str, count: int) -> dict[str, Tensor]:
        """The first ``count`` examples of ``split`` as one batch, as evaluation sees them."""
        raise NotImplementedError

    def keep_examples(self) -> None:
        """Put the fixed validation examples into the interface (after loading the data)."""
        if not self.interface.examples:
            self.interface.examples = self.batch("validation", NUM_EXAMPLES)

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

    interface: TextInterface
    tokenizer_args: dict[str, Any]

    @property
    def tokenizer(self) -> TextTokenizer | None:
        return self.interface.tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: TextTokenizer) -> None:
        self.interface.tokenizer = tokenizer

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

    # Saved in checkpoints, so a checkpoint encodes and decodes without the data.
    def state_dict(self) -> dict[str, Any]:
        return self.interface.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.interface.load_state_dict(state, max_length_of(self.tokenizer_args))
