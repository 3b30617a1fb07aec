"""Config helpers: the error type for bad settings, a rich tree of the config, saving it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import rich
import rich.syntax
import rich.tree
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from attnlab.utils.schema import register_schemas

CONF_MODULE = "attnlab.conf"  # shipped inside the package, so an installed wheel finds it
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

PRINT_ORDER = ("data", "model", "task", "callbacks", "logger", "trainer", "paths", "extras")


def print_config(cfg: DictConfig, enabled: bool = True) -> None:
    """The config as a rich tree, main groups first (printed once per run, before training)."""
    if not enabled:
        return
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in PRINT_ORDER if k in cfg] + [k for k in cfg if k not in PRINT_ORDER]
    for key in keys:
        branch = tree.add(str(key), style="bold")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config beside the run (Hydra's .hydra/config.yaml is unresolved)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", hydra: bool = False
) -> DictConfig:
    """The config ``train.py`` would run with these overrides, for scripts and tests."""
    register_schemas()
    with initialize_config_module(CONF_MODULE, version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=hydra)
