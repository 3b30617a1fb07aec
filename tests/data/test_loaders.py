"""The loaders every DataModule shares (data/base.py): seeded, resumable shuffling."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from attnlab.data.base import SplitDataModule
from attnlab.data.collate import in_one_storage


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


def _batch(examples: list[int]) -> dict[str, object]:
    ids = torch.tensor(examples).repeat(3, 1).T  # (B, 3) int64
    return {
        "input_ids": ids,
        "attention_mask": ids % 2 == 0,  # bool, 1 byte an element: the next view is unaligned
        "pixel_values": ids.float().T.contiguous()[:, ::2],  # float32, not contiguous
        "texts": [str(e) for e in examples],
    }


def test_a_batch_in_one_storage_keeps_values_dtypes_and_shapes() -> None:
    batch = _batch([1, 2, 3, 4, 5])
    packed = in_one_storage(batch)
    tensors = [name for name in batch if name != "texts"]
    assert len({packed[name].untyped_storage().data_ptr() for name in tensors}) == 1
    for name in tensors:
        assert packed[name].dtype == batch[name].dtype
        assert torch.equal(packed[name], batch[name])
    assert packed["texts"] == batch["texts"]


def test_loader_workers_send_each_batch_in_one_storage() -> None:
    datamodule = SplitDataModule()
    datamodule.num_workers = 2
    loader = datamodule.dataloader(list(range(12)), batch_size=4, collate_fn=_batch)
    batches = list(loader)
    assert [b["texts"] for b in batches] == [[str(e) for e in range(i, i + 4)] for i in (0, 4, 8)]
    for batch in batches:
        expected = _batch([int(text) for text in batch["texts"]])
        for name in ("input_ids", "attention_mask", "pixel_values"):
            assert batch[name].dtype == expected[name].dtype
            assert torch.equal(batch[name], expected[name])
        storages = {batch[name].untyped_storage().data_ptr() for name in batch if name != "texts"}
        assert len(storages) == 1
