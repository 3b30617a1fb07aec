"""W&B online when it can be, offline when it cannot: a run never waits on a login prompt or an
unreachable server.

With ``WANDB_MODE=online``, ``online_or_offline`` checks for an API key without prompting and
starts each ``WandbLogger``'s run (bounded by ``logger.wandb.settings.init_timeout``). When
either fails it warns once and switches the process to offline mode, so the run (and every later
run of a multirun) logs to ``<run>/wandb/offline-run-*`` for ``wandb sync`` later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from lightning.pytorch.loggers import Logger, WandbLogger

log = logging.getLogger(__name__)


def online_or_offline(loggers: list[Logger], rebuild: Callable[[], list[Logger]]) -> list[Logger]:
    """``loggers`` with their W&B runs started online, or ``rebuild()`` once W&B is offline."""
    wandb_loggers = [logger for logger in loggers if isinstance(logger, WandbLogger)]
    if os.environ.get("WANDB_MODE") != "online" or not wandb_loggers:
        return loggers
    problem = _why_not_online(wandb_loggers)
    if problem is None:
        return loggers
    import wandb

    os.environ["WANDB_MODE"] = "offline"
    wandb.teardown()  # drop the settings wandb read while online; the next run reads "offline"
    log.warning(
        f"W&B is not reachable online ({problem}); logging offline instead. Upload later with "
        f"`wandb sync {wandb_loggers[0].save_dir}/wandb/offline-run-*`, or set WANDB_MODE=offline "
        f"to skip this check"
    )
    return rebuild()


def _why_not_online(loggers: list[WandbLogger]) -> str | None:
    import wandb

    if not wandb.login(prompt=False, verify=False):
        return "no API key: run `wandb login` or set WANDB_API_KEY"
    try:
        for logger in loggers:
            logger.experiment  # noqa: B018 - starts the run: network, credentials, init_timeout
    except Exception as error:  # wandb raises CommError, UsageError, AuthenticationError, ...
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None
