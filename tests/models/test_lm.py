"""Language models: shapes, weight tying, causality, sampling, and the RNN baseline."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from attnlab.models.lm import TransformerLM, count_parameters, generate
from attnlab.models.rnn import RNNLM

VOCAB = 50


def _lm(**kwargs: object) -> TransformerLM:
    torch.manual_seed(0)
    options = {"d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 64, "max_len": 16}
    return TransformerLM(VOCAB, **(options | kwargs)).eval()


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_lm_shapes(positional: str, norm_first: bool) -> None:
    model = _lm(positional=positional, norm_first=norm_first)
    ids = torch.randint(VOCAB, (3, 10))
    assert model(ids).shape == (3, 10, VOCAB)
    assert model(ids, mask=torch.ones(3, 10, dtype=torch.bool)).shape == (3, 10, VOCAB)


def test_weight_tying_shares_storage() -> None:
    tied, untied = _lm(tie_weights=True), _lm(tie_weights=False)
    assert tied.lm_head.weight.data_ptr() == tied.token_embeddings.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.token_embeddings.weight.data_ptr()
    assert count_parameters(untied) - count_parameters(tied) == VOCAB * 32


def test_count_parameters() -> None:
    assert count_parameters(nn.Linear(3, 4)) == 3 * 4 + 4


@pytest.mark.parametrize("model_factory", [_lm, lambda: RNNLM(VOCAB, 16, 24).eval()])
def test_logits_at_t_ignore_tokens_after_t(model_factory: Callable[[], nn.Module]) -> None:
    model = model_factory()
    ids = torch.randint(VOCAB, (2, 12))
    logits = model(ids)
    for t in range(11):
        changed = ids.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1 + torch.randint(VOCAB - 1, (1,))) % VOCAB
        new_logits = model(changed)
        torch.testing.assert_close(new_logits[:, : t + 1], logits[:, : t + 1])
        assert not torch.allclose(new_logits[:, t + 1 :], logits[:, t + 1 :])


def test_math_and_sdpa_lms_agree() -> None:
    sdpa, math_lm = _lm(attn_impl="sdpa"), _lm(attn_impl="math")
    math_lm.load_state_dict(sdpa.state_dict())
    ids = torch.randint(VOCAB, (2, 9))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5])[:, None]
    torch.testing.assert_close(sdpa(ids, mask), math_lm(ids, mask), rtol=1e-5, atol=1e-5)


def test_sequence_longer_than_max_len_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_len=16"):
        _lm()(torch.randint(VOCAB, (1, 17)))


def test_lm_trains() -> None:
    model = _lm(dropout=0.1).train()
    ids = torch.randint(VOCAB, (4, 12))
    loss = nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_generate_length_and_mode() -> None:
    model = _lm().train()
    prompt = torch.randint(VOCAB, (2, 5))
    out = generate(model, prompt, max_new_tokens=20)  # 25 > max_len: the context is cropped
    assert out.shape == (2, 25)
    assert torch.equal(out[:, :5], prompt)
    assert out.dtype == prompt.dtype and out.max() < VOCAB
    assert model.training  # restored


def test_top_k_one_is_greedy() -> None:
    model = _lm()
    prompt = torch.randint(VOCAB, (3, 4))
    greedy = generate(model, prompt, max_new_tokens=15, greedy=True)
    torch.manual_seed(1)
    top_1 = generate(model, prompt, max_new_tokens=15, top_k=1, temperature=2.0)
    assert torch.equal(top_1, greedy)
    torch.manual_seed(1)
    sampled = generate(model, prompt, max_new_tokens=15, temperature=5.0)
    assert not torch.equal(sampled, greedy)


def test_generate_argument_errors() -> None:
    prompt = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        generate(_lm(), prompt, 1, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        generate(_lm(), prompt, 1, top_k=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_lm_shapes_and_generate(cell: str) -> None:
    model = RNNLM(VOCAB, embed_dim=16, hidden_dim=24, num_layers=2, cell=cell)
    ids = torch.randint(VOCAB, (3, 7))
    assert model(ids).shape == (3, 7, VOCAB)
    assert generate(model, ids, max_new_tokens=4).shape == (3, 11)


def test_rnn_lm_tying() -> None:
    model = RNNLM(VOCAB, embed_dim=16, hidden_dim=16, tie_weights=True)
    assert model.lm_head.weight.data_ptr() == model.embedding.weight.data_ptr()
    with pytest.raises(ValueError, match="hidden_dim == embed_dim"):
        RNNLM(VOCAB, embed_dim=16, hidden_dim=24, tie_weights=True)
    with pytest.raises(ValueError, match="cell"):
        RNNLM(VOCAB, cell="transformer")
