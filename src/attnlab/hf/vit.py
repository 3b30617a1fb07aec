"""Hugging Face's ViT and attnlab's ``VisionTransformer``: the names of the same weights, in both
of HF's layouts, and loading a HF state dict into ours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from attnlab.errors import ConfigError
from attnlab.hf.folders import kwargs_from_hf_config, read_hf_folder
from attnlab.models.vit import VisionTransformer

# Where Hugging Face's ViT keeps our weights, in its two layouts: "checkpoint" (the names in
# model.safetensors files, e.g. google/vit-base-patch16-224, and what save_pretrained writes)
# and "modules" (transformers >= 5 in memory, ViTModel(config).state_dict()).
HF_LAYOUTS = ("checkpoint", "modules")
HF_LAYER_PREFIX = ("encoder.layer", "layers")
HF_LAYER_NAMES = {  # ours in encoder.layers.N -> (checkpoint, modules) in HF_LAYER_PREFIX.N
    "attention.query": ("attention.attention.query", "attention.q_proj"),
    "attention.key": ("attention.attention.key", "attention.k_proj"),
    "attention.value": ("attention.attention.value", "attention.v_proj"),
    "attention.output": ("attention.output.dense", "attention.o_proj"),
    "attention_norm": ("layernorm_before", "layernorm_before"),
    "feed_forward.intermediate": ("intermediate.dense", "mlp.fc1"),
    "feed_forward.output": ("output.dense", "mlp.fc2"),
    "feed_forward_norm": ("layernorm_after", "layernorm_after"),
}
HF_OTHER_NAMES = {
    "cls_token": "embeddings.cls_token",
    "position_embeddings": "embeddings.position_embeddings",
    "patch_embedding.projection.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embedding.projection.bias": "embeddings.patch_embeddings.projection.bias",
    "encoder.final_norm.weight": "layernorm.weight",
    "encoder.final_norm.bias": "layernorm.bias",
}
HF_HEAD_NAMES = {"head.weight": "classifier.weight", "head.bias": "classifier.bias"}
HF_IGNORED = ("pooler.",)  # ViTModel's tanh pooler: not used for classification


def hf_vit_name_map(num_layers: int, layout: str = "checkpoint") -> dict[str, str]:
    """Every parameter of ``VisionTransformer`` -> its name in a HF ViT state dict.

    Names are without the ``vit.`` prefix of ``ViTForImageClassification`` (the head maps to
    its top-level ``classifier``). ``layout``: ``checkpoint`` (files) or ``modules``
    (transformers >= 5 in memory).
    """
    if layout not in HF_LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'; use one of {HF_LAYOUTS}")
    column = HF_LAYOUTS.index(layout)
    names = dict(HF_OTHER_NAMES)
    for i in range(num_layers):
        for ours, theirs in HF_LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                hf = f"{HF_LAYER_PREFIX[column]}.{i}.{theirs[column]}.{kind}"
                names[f"encoder.layers.{i}.{ours}.{kind}"] = hf
    return {**names, **HF_HEAD_NAMES}


@torch.no_grad()
def load_hf_vit_state_dict(model: VisionTransformer, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Copy a HF ``ViTModel`` / ``ViTForImageClassification`` state dict into ``model``.

    Either layout of ``hf_vit_name_map`` is recognised. Returns our parameters it had no weights
    for (the head, from a ``ViTModel``); any other missing, extra or mis-shaped tensor raises a
    ValueError naming it. The model must be built with the HF config's sizes, and its
    ``layer_norm_eps`` (1e-12 in HF's default config).
    """
    hf = {k.removeprefix("vit."): v for k, v in state_dict.items()}
    hf = {k: v for k, v in hf.items() if not k.startswith(HF_IGNORED)}
    layout = "modules" if any(k.startswith("layers.") for k in hf) else "checkpoint"
    names = hf_vit_name_map(len(model.encoder.layers), layout)
    ours = model.state_dict()  # tensors sharing the parameters' storage
    unknown = sorted(set(hf) - set(names.values()))
    if unknown:
        raise ValueError(f"HF ViT weights with no place in this model: {unknown[:8]}")
    missing = [o for o, t in names.items() if t not in hf and o not in HF_HEAD_NAMES]
    if missing:
        raise ValueError(
            f"HF state dict lacks {[names[m] for m in missing][:8]} (for {missing[:8]}); is it a "
            f"ViT with {len(model.encoder.layers)} layers?"
        )
    skipped = []
    for our_name, hf_name in names.items():
        if hf_name not in hf:  # a ViTModel has no classifier
            skipped.append(our_name)
            continue
        tensor = hf[hf_name]
        if our_name not in ours:
            raise ValueError(
                f"HF '{hf_name}' has no counterpart: build the model with positional='learned'"
            )
        if ours[our_name].shape != tensor.shape:
            raise ValueError(
                f"'{hf_name}' is {tuple(tensor.shape)} but '{our_name}' is "
                f"{tuple(ours[our_name].shape)}: build the model with the HF config's sizes"
            )
        ours[our_name].copy_(tensor)
    return skipped


# HF ViT config.json keys -> VisionTransformer arguments (the sizes the weights fix).
HF_VIT_CONFIG_KEYS = {
    "image_size": "image_size",
    "patch_size": "patch_size",
    "num_channels": "channels",
    "hidden_size": "d_model",
    "num_attention_heads": "num_heads",
    "num_hidden_layers": "num_layers",
    "intermediate_size": "d_ff",
    "layer_norm_eps": "layer_norm_eps",
}


def vision_transformer(
    num_classes: int, pretrained: str | None = None, **vit: Any
) -> VisionTransformer:
    """``model=vit``: a ``VisionTransformer``, new or from a HF ViT directory (``pretrained``:
    config.json + model.safetensors, e.g. a ``save_pretrained`` of google/vit-base-patch16-224).

    Sizes then come from the directory's config; the configured ones must agree where the data
    fixes them (image size, channels). A head for another number of classes starts anew
    (fine-tuning); one for as many classes is loaded too."""
    if not pretrained:
        return VisionTransformer(num_classes, **vit)
    config, state = read_hf_folder(pretrained, "ViT")
    sizes = kwargs_from_hf_config(config, HF_VIT_CONFIG_KEYS)
    for key in ("image_size", "channels"):
        if key in vit and key in sizes and vit[key] != sizes[key]:
            resize = " data.resize=true" if key == "image_size" else ""
            raise ConfigError(
                f"the pretrained ViT takes {key}={sizes[key]} but the data gives {vit[key]}: "
                f"set data.{key}={sizes[key]}{resize}"
            )
    # HF's embedding: one linear map per patch, learned positions
    hf_layout = {"positional": "learned", "patch_kernel": None, "stem": "patch"}
    model = VisionTransformer(num_classes, **{**vit, **sizes, **hf_layout})
    head = state.get("classifier.weight")
    if head is not None and head.shape[0] != num_classes:  # another label set: a new head
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    load_hf_vit_state_dict(model, state)
    return model


vision_transformer.builds = VisionTransformer  # its **vit: checked against this signature
