"""One error boundary for every command line: a user's mistake is one short message and exit 2.

attnlab raises ``ConfigError`` (a setting that cannot work) and ``DataError`` (a file or column
that cannot be read) with a message naming the key or file and the fix. By the time they reach
the command line Hydra or OmegaConf has often wrapped them (an ``InstantiationException``, an
``InterpolationResolutionError`` while ``${datamodule:...}`` resolves), and Hydra prints the
wrappers' tracebacks. The boundary finds the user error in the cause chain and prints only
``attnlab: error: <message>``. Hydra's own config mistakes (an unknown group option, a misspelt
or mistyped top-level key, a bad override) get the same treatment. ``HYDRA_FULL_ERROR=1`` shows
everything; any other exception keeps its full traceback.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hydra.errors import CompactHydraException
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


class DataError(ValueError):
    """Bad data or data settings; the message names the problem and the fix."""


USER_ERRORS = (ConfigError, DataError)
# A path the run cannot write (or read): most often the output folder.
UNUSABLE_PATH = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOSPC}
EXIT_USER_ERROR = 2  # as argparse: the command was given something it cannot use
# The user's own HYDRA_FULL_ERROR, recorded by the first process: the boundary turns Hydra's on
# to see the original exceptions, and processes the run starts (DDP ranks) inherit both.
USER_FULL_ERROR = "ATTNLAB_USER_HYDRA_FULL_ERROR"

R = TypeVar("R")


def user_error_message(error: BaseException) -> str | None:
    """The message to show for ``error`` if it is, or wraps, a mistake of the user's."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, USER_ERRORS):
            return str(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if isinstance(error, OSError) and error.errno in UNUSABLE_PATH and error.filename:
        return (
            f"cannot use '{error.filename}': {error.strerror}. Runs write under "
            "paths.output_root (default: ./outputs where you launch): point it at a folder you "
            "can write, e.g. paths.output_root=$HOME/attnlab-outputs (or set ATTNLAB_ROOT)"
        )
    if isinstance(error, CompactHydraException):  # composing the config failed
        cause = error.__cause__
        extra = f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else ""
        return _compact(f"{error}{extra}")
    return None


def _compact(hydra_message: str) -> str:
    """Hydra's message without its config search path, the available options on one line."""
    message = hydra_message.split("\nConfig search path:")[0]
    return re.sub(
        r"(Available options in '[^']+':)((?:\n\t.+)+)",
        lambda m: f"{m[1]} {', '.join(m[2].split())}",
        message,
    )


@contextmanager
def error_boundary() -> Iterator[None]:
    """Around a command's main: user errors become ``attnlab: error: ...`` and exit status 2."""
    recorded_here = USER_FULL_ERROR not in os.environ  # else a parent process recorded it
    if recorded_here:
        os.environ[USER_FULL_ERROR] = os.environ.get("HYDRA_FULL_ERROR", "")
    show_everything = os.environ[USER_FULL_ERROR] == "1"
    hydra_before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
    try:
        yield
    except Exception as error:
        message = None if show_everything else user_error_message(error)
        if message is None:
            raise
        print(f"attnlab: error: {message.strip()}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        if hydra_before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = hydra_before
        if recorded_here:
            os.environ.pop(USER_FULL_ERROR, None)


def command(main: Callable[..., R]) -> Callable[..., R | None]:
    """A console script's main behind the error boundary. Called with no arguments (as the
    console script calls it: ``sys.exit(main())``) it returns None, the exit status 0, rather
    than its result; ``main(argv)`` from Python returns the result."""

    @functools.wraps(main)
    def bounded(*args: Any, **kwargs: Any) -> R | None:
        with error_boundary():
            result = main(*args, **kwargs)
        return result if args or kwargs else None

    return bounded
