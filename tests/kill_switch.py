"""A callback the kill-and-resume test puts into a real ``train.py`` run (``PYTHONPATH=tests``):
at a given step the process kills itself with SIGKILL, as the OOM killer or a lost node would:
no handler, no checkpoint, no cleanup."""

from __future__ import annotations

import os
import signal

import lightning as L


class SigkillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
