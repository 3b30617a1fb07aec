"""A process's random state as checkpoint-safe values (lists of ints, tuples: ``torch.load``
with ``weights_only=True`` reads them), to save and to put back for an exact resume.

Plain lists rather than tensors: loader workers send their state with every batch, and each
tensor sent between processes costs a shared-memory segment (a third of a 2-worker loader's
throughput), where a list is only pickled."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def random_state() -> dict[str, Any]:
    """This process's random state: torch (CPU and CUDA), NumPy and Python's ``random``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state().tolist(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": (name, keys.tolist(), pos, has_gauss, gauss),
        "python": random.getstate(),
    }


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
