"""Checkpoints written whole or not at all: a crash mid-write keeps the previous file.

Lightning's ``TorchCheckpointIO`` serializes to memory, then opens the target for writing: a
process killed during that write (pre-emption, a full disk) leaves a truncated ``last.ckpt``
and nothing to resume from. ``AtomicCheckpointIO`` writes a temporary file beside the target,
syncs it to disk and renames it over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from attnlab.errors import ConfigError


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file's contents; a truncated or corrupted file is a ``ConfigError`` that
    names it, not a zip or unpickling error from inside ``torch.load``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, ImportError, pickle.UnpicklingError) as e:
        raise ConfigError(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}): "
            "it is truncated or corrupted. Resume from another one (an earlier epoch's file in "
            "the same checkpoints/ folder) or train again"
        ) from e


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that replaces local checkpoint files atomically (remote URLs, e.g.
    ``s3://``, keep Lightning's own transactional write), and that gives Lightning a checkpoint
    the pipeline has already read (``hand_over``) instead of reading the file a second time."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_over: tuple[Path, dict[str, Any]] | None = None

    def hand_over(self, path: Path, checkpoint: dict[str, Any]) -> None:
        """The next ``load_checkpoint(path)`` returns ``checkpoint`` (once): a resumed run reads
        its checkpoint once, for the tokenizer and the fit check and then for Lightning."""
        self.handed_over = (Path(path).resolve(), checkpoint)

    @override
    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.handed_over is not None and _is_local(path):
            handed_path, checkpoint = self.handed_over
            if Path(path).resolve() == handed_path:
                self.handed_over = None  # Lightning may change it; a later load reads the file
                return checkpoint
        return super().load_checkpoint(path, *args, **kwargs)

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, Path(path))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in ``path``'s folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_local(path: Any) -> bool:
    return isinstance(get_filesystem(path), LocalFileSystem)


def check_checkpoint_fits(
    task: L.LightningModule, state: dict, path: Path | None, experiment: str
) -> None:
    """A checkpoint of another experiment, model size or vocabulary is a clear error here,
    not a wall of tensor-size mismatches from deep inside ``load_state_dict``."""
    ours, theirs = task.state_dict(), state.get("state_dict", {})
    problems = [f"missing {k}" for k in sorted(ours.keys() - theirs.keys())]
    problems += [f"unexpected {k}" for k in sorted(theirs.keys() - ours.keys())]
    problems += [
        f"{k}: {tuple(theirs[k].shape)} in the checkpoint, {tuple(ours[k].shape)} here"
        for k in sorted(ours.keys() & theirs.keys())
        if ours[k].shape != theirs[k].shape
    ]
    if problems:
        saved = state.get("attnlab_config", {}).get("task_name", "unknown")
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if problems[3:] else "")
        raise ConfigError(
            f"checkpoint '{path}' (experiment {saved}) does not fit this run's model "
            f"(experiment {experiment}): {shown}. Use the experiment and model/data overrides the "
            f"checkpoint was trained with, or a checkpoint of this one"
        )
