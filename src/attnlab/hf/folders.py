"""A Hugging Face model directory (what ``save_pretrained`` writes): its config and weights."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor


def read_hf_folder(path: str | Path, family: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``config.json`` and ``model.safetensors`` of a HF ``family`` (BERT, ViT) directory."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    for required in (config_path, weights_path):
        if not required.is_file():
            raise FileNotFoundError(
                f"'{required}' not found: a HF {family} directory holds config.json and "
                "model.safetensors (save one with save_pretrained(..., safe_serialization=True))"
            )
    return json.loads(config_path.read_text()), load_file(str(weights_path))


def kwargs_from_hf_config(config: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """Our constructor arguments (``keys``: HF name -> ours) from a HF ``config.json``; only
    exact GELU, the activation our encoder layers use, is supported."""
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise ValueError(f"hidden_act='{activation}' is not supported; only exact 'gelu' is")
    return {ours: config[theirs] for theirs, ours in keys.items() if theirs in config}
