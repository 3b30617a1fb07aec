"""Settings that cannot work, caught when the run is built (before any data is trained on) and
named with the config key to change, instead of surfacing as a torch error mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Real
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.utils.config import ConfigError

# Data settings that fix the longest sequence the model sees; none may exceed model.max_len.
SEQUENCE_LENGTHS = ("data.block_size", "data.max_seq_length", "data.tokenizer.max_length")


def check_run_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first impossible value of a resolved run config."""
    lr = OmegaConf.select(cfg, "task.optimizer.lr")
    if _is_number(lr) and lr <= 0:
        raise ConfigError(f"task.optimizer.lr={lr} must be > 0; e.g. task.optimizer.lr=0.001")
    for key, value in _leaves(cfg.get("model"), "model"):
        if key.endswith("dropout") and _is_number(value) and not 0 <= value < 1:
            raise ConfigError(
                f"{key}={value}: a dropout probability must be in [0, 1); e.g. {key}=0.1"
            )
    max_len = OmegaConf.select(cfg, "model.max_len")
    for key in SEQUENCE_LENGTHS:
        length = OmegaConf.select(cfg, key)
        if _is_number(max_len) and _is_number(length) and length > max_len:
            raise ConfigError(
                f"{key}={length} is longer than the model's position table "
                f"(model.max_len={max_len}): set model.max_len>={length} or {key}<={max_len}"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, DictConfig):
        for key in node:
            yield from _leaves(node[key], f"{prefix}.{key}")
    else:
        yield prefix, node
