"""Command lines of the attnlab-* tools and of ``scripts/``: Hydra-style ``key=value`` or
``--key value``."""

from __future__ import annotations

import argparse


def parse_key_values(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` with ``parser``, reading ``key=value`` as ``--key=value`` (so the scripts
    take arguments the way ``train.py`` does)."""
    return parser.parse_args([f"--{a}" if "=" in a and not a.startswith("-") else a for a in argv])
