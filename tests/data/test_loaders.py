"""The loaders every DataModule shares (data/base.py): seeded, resumable shuffling."""

from __future__ import annotations

from types import SimpleNamespace

from attnlab.data.base import SplitDataModule


def _order(datamodule: SplitDataModule, epoch: int, passes: int = 1) -> list[list[int]]:
    datamodule.trainer = SimpleNamespace(current_epoch=epoch)
    loader = datamodule.dataloader(list(range(12)), batch_size=12, shuffle=True)
    return [next(iter(loader)).tolist() for _ in range(passes)]


def test_shuffling_is_seeded_by_data_seed_and_new_each_epoch() -> None:
    datamodule = SplitDataModule()
    datamodule.seed = 7
    assert _order(datamodule, epoch=0) == _order(datamodule, epoch=0)  # reproducible
    first, second = _order(datamodule, epoch=0, passes=2)
    assert first != second  # a loader kept across epochs draws a new order each epoch
    assert _order(datamodule, epoch=1) != _order(datamodule, epoch=0)  # one rebuilt each epoch too
    datamodule.seed = 8
    assert _order(datamodule, epoch=0) != [first]
