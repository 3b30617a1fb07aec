"""Settings that cannot work, caught when the run is built (before any data is trained on) and
named with the config key to change, instead of surfacing as a torch error mid-run."""

from __future__ import annotations

import difflib
import inspect
import os
import typing
from collections.abc import Callable, Iterator
from numbers import Real
from types import UnionType
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from torch import nn

from attnlab.errors import ConfigError

# Hydra's own keys in a node to instantiate.
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# What a value given for a parameter annotated with one of these types must be.
PLAIN_TYPES = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}

# Data settings that fix the longest sequence the model sees; none may exceed model.max_len.
SEQUENCE_LENGTHS = ("data.block_size", "data.max_seq_length", "data.tokenizer.max_length")


def check_run_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first impossible value of a resolved run config."""
    check_targets(cfg)
    mode = cfg.get("optimized_mode")
    if mode not in ("min", "max"):
        raise ConfigError(f"optimized_mode={mode}: use min or max")
    lr = OmegaConf.select(cfg, "task.optimizer.lr")
    if lr is not None and not _is_number(lr):
        raise ConfigError(f"task.optimizer.lr={lr!r} is not a number; e.g. task.optimizer.lr=0.001")
    if _is_number(lr) and lr <= 0:
        raise ConfigError(f"task.optimizer.lr={lr} must be > 0; e.g. task.optimizer.lr=0.001")
    for key, value in _leaves(cfg.get("model"), "model"):
        if key.endswith("dropout") and _is_number(value) and not 0 <= value < 1:
            raise ConfigError(
                f"{key}={value}: a dropout probability must be in [0, 1); e.g. {key}=0.1"
            )
    if cfg.get("trainer"):
        check_devices(cfg.trainer)


def check_fits_positions(cfg: DictConfig, net: nn.Module) -> None:
    """The data's sequences fit the built model's position table (``net.max_len``, from the
    config or from pretrained weights), named before the first batch overruns it."""
    max_len = getattr(net, "max_len", None)
    for key in SEQUENCE_LENGTHS:
        length = OmegaConf.select(cfg, key)
        if _is_number(max_len) and _is_number(length) and length > max_len:
            raise ConfigError(
                f"{key}={length} is longer than the model's position table "
                f"(model.max_len={max_len}): set model.max_len>={length} or {key}<={max_len}"
            )


def check_devices(trainer: DictConfig) -> None:
    """``trainer=gpu`` without a GPU, or more devices than the machine has, named before
    Lightning fails on it (a GPU request) or starts more CPU processes than there are cores."""
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu) but this machine has no CUDA GPU: "
            "use trainer=cpu, or trainer=default (a GPU when there is one)"
        )
    wanted = len(devices) if OmegaConf.is_list(devices) or isinstance(devices, list) else devices
    if not isinstance(wanted, int) or wanted <= 1:
        return  # "auto", -1 (all of them) and a single device always fit
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    available, kind = (gpus, "GPU") if on_gpu else (os.cpu_count() or 1, "CPU core")
    if wanted > available:
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {available} {kind}"
            f"{'s' if available != 1 else ''}: set trainer.devices<={available} "
            "(or trainer.devices=auto)"
        )


def check_targets(node: Any, key: str = "") -> None:
    """Each ``_target_`` node's keys against its target's signature: a key the class does not
    take (a typo) or a plain value of the wrong type is a ``ConfigError`` naming the key."""
    if not isinstance(node, DictConfig):
        return
    target = node.get("_target_")
    if isinstance(target, str):
        _check_call(node, key, target)
    for name in node:
        if not (OmegaConf.is_missing(node, name) or OmegaConf.is_interpolation(node, name)):
            check_targets(node[name], f"{key}.{name}" if key else str(name))


def _check_call(node: DictConfig, key: str, target: str) -> None:
    try:
        call = get_object(target)
    except Exception as error:  # ImportError, AttributeError... Hydra words it well
        raise ConfigError(f"{key}._target_={target} cannot be imported: {error}") from None
    parameters = _parameters(call)
    if parameters is None:  # takes **kwargs: any key may be meant for it
        return
    for name in node:
        if name in HYDRA_KEYS:
            continue
        if name not in parameters:
            close = difflib.get_close_matches(str(name), list(parameters), n=1)
            hint = f"did you mean {key}.{close[0]}? " if close else ""
            raise ConfigError(
                f"{key}.{name}: {target} takes no '{name}'; {hint}its settings are "
                f"{', '.join(sorted(parameters))}"
            )
        if OmegaConf.is_interpolation(node, name):
            continue
        expected = _plain_types(parameters[name])
        value = node[name]
        if expected and value is not None and not _is_a(value, expected):
            kinds = " or ".join(t.__name__ for t in expected)
            raise ConfigError(
                f"{key}.{name}={value!r}: {target} wants {kinds} here, not {type(value).__name__}"
            )


def _parameters(call: Callable) -> dict[str, Any] | None:
    """Name -> annotation of the keywords ``call`` takes; None when it takes any keyword.

    Our own classes pass ``**base`` on to their parent's ``__init__`` (``BertPretrainingTask``
    -> ``BaseTask``), so their parents' parameters count too, and our builder functions name
    the class their ``**kwargs`` go to (``builds``); elsewhere ``**kwargs`` may go anywhere
    (``WandbLogger`` hands them to ``wandb.init``) and any key is allowed.
    """
    inits = [call]
    if hasattr(call, "builds"):  # e.g. attnlab.hf.vit.vision_transformer -> VisionTransformer
        inits = [
            call,
            *(c.__dict__["__init__"] for c in call.builds.__mro__ if "__init__" in c.__dict__),
        ]
    elif inspect.isclass(call):
        inits = [c.__dict__["__init__"] for c in call.__mro__ if "__init__" in c.__dict__]
        inits = inits if call.__module__.startswith("attnlab.") else inits[:1]
    found: dict[str, Any] = {}
    for init in inits:
        try:
            params = inspect.signature(init).parameters.values()
            hints = typing.get_type_hints(init)
        except (TypeError, ValueError, NameError):  # no signature, or unreadable annotations
            return None
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        found = {p.name: hints.get(p.name) for p in params if p.kind in kinds} | found
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            found.pop("self", None)
            return found
    return None


def _plain_types(annotation: Any) -> tuple[type, ...]:
    """The plain types a value may have for ``annotation`` (int, float, bool, str and their
    optional forms); empty where the annotation says more than that (not checked)."""
    options = (
        typing.get_args(annotation)
        if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    options = tuple(o for o in options if o is not type(None))
    if not options or any(o not in PLAIN_TYPES for o in options):
        return ()
    return tuple(t for o in options for t in PLAIN_TYPES[o])


def _is_a(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int to Python, not a number to a user
    return isinstance(value, types)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, DictConfig):
        for key in node:
            yield from _leaves(node[key], f"{prefix}.{key}")
    else:
        yield prefix, node
