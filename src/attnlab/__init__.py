"""attnlab: attention and Transformers from the ground up, trained with Lightning + Hydra.

``attnlab.train``, ``attnlab.evaluate`` and ``attnlab.load`` are the Python API
(:mod:`attnlab.api`); they import Lightning on first use, so ``import attnlab`` stays light.
"""

from __future__ import annotations

from typing import Any

API = ("train", "evaluate", "load", "Trained", "RunResult", "job_config")
__all__ = list(API)


def __getattr__(name: str) -> Any:
    if name in API:
        from attnlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'attnlab' has no attribute '{name}'")
