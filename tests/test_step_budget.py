"""trainer.min_steps holds on data of any size: max_epochs is raised to reach it, and only then."""

from __future__ import annotations

import lightning as L
import pytest
from omegaconf import OmegaConf

from attnlab.utils.step_budget import reach_min_steps


class _Batches(L.LightningDataModule):
    """A DataModule whose train loader has ``count`` batches."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def train_dataloader(self) -> list[int]:
        return list(range(self.count))


def _max_epochs(batches: int, **trainer) -> int:
    cfg = OmegaConf.create({"trainer": {"max_epochs": 50, "min_steps": 800, **trainer}})
    reach_min_steps(cfg, _Batches(batches))
    return cfg.trainer.max_epochs


@pytest.mark.parametrize(
    ("batches", "trainer", "epochs"),
    [
        (7, {}, 115),  # 1,000 images at batch 128 (800 train): 115 epochs make the 800 steps
        (32, {}, 50),  # the embedded 4,050 digits: 50 epochs are 1,600 steps already
        (7, {"accumulate_grad_batches": 2}, 267),  # 3 optimizer steps an epoch
        (7, {"min_steps": None}, 50),  # no minimum: epochs only
        (7, {"max_steps": 100}, 50),  # a run cut by steps or batches stays cut
        (7, {"limit_train_batches": 2}, 50),
        (7, {"fast_dev_run": True}, 50),
    ],
)
def test_max_epochs_is_raised_to_reach_min_steps(batches: int, trainer: dict, epochs: int) -> None:
    assert _max_epochs(batches, **trainer) == epochs
