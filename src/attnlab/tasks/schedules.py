"""Learning-rate schedules torch does not ship, picked by ``scheduler=NAME`` (conf/scheduler/).

A Transformer trained from scratch wants a warm-up then a decay of the learning rate, stepped
every batch. Schedules take ``total_steps``, which ``BaseTask`` fills in from the trainer when
the config leaves it null.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """The lr rises linearly to the optimizer's lr over the first ``warmup_fraction`` of the
    steps, then follows half a cosine down to ``min_lr_ratio`` times it at ``total_steps``."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
