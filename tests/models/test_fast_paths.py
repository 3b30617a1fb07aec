"""Fast paths compute what the plain paths compute: fused QKV projection, torch.compile (names and
checkpoints unchanged), fused AdamW with no decay on biases and norms, bf16-mixed on a CPU."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnlab import pipeline
from attnlab.hf.bert import hf_bert_name_map
from attnlab.models.bert import BertForPreTraining
from attnlab.models.transformer import Encoder, EncoderConfig
from attnlab.tasks.base import BaseTask

SIZES = {"d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 48, "max_len": 16, "dropout": 0.0}
VOCAB = 50


def _bert(**overrides) -> BertForPreTraining:
    torch.manual_seed(0)
    return BertForPreTraining(VOCAB, **{**SIZES, **overrides}).double()


def _mlm_loss(model: BertForPreTraining) -> torch.Tensor:
    """Masked-LM loss of a fixed padded batch, positions 2 and 5 masked."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (3, 9), generator=generator)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 6:] = False
    masked = torch.zeros_like(mask)
    masked[:, [2, 5]] = True
    logits, _ = model(ids, attention_mask=mask, masked_positions=masked)
    return nn.functional.cross_entropy(logits, ids[masked])


def _loss_and_grads(model: BertForPreTraining) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = _mlm_loss(model)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_fused_qkv_gives_the_same_loss_and_gradients(attn_impl: str) -> None:
    plain_loss, plain_grads = _loss_and_grads(_bert(attn_impl=attn_impl, fused_qkv=False))
    fused = _bert(attn_impl=attn_impl, fused_qkv=True)
    fused_loss, fused_grads = _loss_and_grads(fused)
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-12, atol=1e-12)
    assert fused_grads.keys() == plain_grads.keys()
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-10, atol=1e-12, msg=name)
    # the three projections stay separate parameters under the names HF checkpoints map onto
    assert set(hf_bert_name_map(2)) == set(fused.state_dict())


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_the_last_layer_at_cls_and_masked_rows_only_gives_the_same_logits_and_gradients(
    attn_impl: str,
) -> None:
    """Uneven masks per sequence (one with none, one with [CLS] masked), padding, MLM + NSP."""
    ids = torch.randint(1, VOCAB, (4, 12), generator=torch.Generator().manual_seed(2))
    segments = (torch.arange(12) >= 6).long().expand(4, 12)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 8:] = False
    masked = torch.zeros_like(mask)
    masked[0, [3, 4, 9]] = True
    masked[1, 7] = True
    masked[3, [0, 11]] = True
    results = []
    for only in (False, True):
        model = _bert(attn_impl=attn_impl, last_layer_masked_only=only)
        mlm, nsp = model(ids, segments, mask, masked_positions=masked)
        loss = nn.functional.cross_entropy(mlm, ids[masked]) + nsp.logsumexp(-1).sum()
        loss.backward()
        results.append((mlm, nsp, {n: p.grad for n, p in model.named_parameters()}))
    (mlm, nsp, grads), (fast_mlm, fast_nsp, fast_grads) = results
    torch.testing.assert_close(fast_mlm, mlm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast_nsp, nsp, rtol=1e-12, atol=1e-12)
    for name, grad in fast_grads.items():
        torch.testing.assert_close(grad, grads[name], rtol=1e-10, atol=1e-12, msg=name)


def _padded_pretraining_batch() -> tuple[torch.Tensor, ...]:
    """Sentence pairs of uneven lengths (one without padding), masks on real tokens only."""
    generator = torch.Generator().manual_seed(3)
    lengths = torch.tensor([12, 5, 9, 2])
    ids = torch.randint(1, VOCAB, (4, 12), generator=generator)
    mask = torch.arange(12) < lengths[:, None]
    segments = ((torch.arange(12) >= lengths[:, None] // 2) & mask).long()
    masked = (torch.rand(4, 12, generator=generator) < 0.3) & mask
    masked[1, 3] = True
    return ids.masked_fill(~mask, 0), segments, mask, masked


@pytest.mark.parametrize("masked_only", [True, False], ids=["masked-rows", "every-row"])
@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_skipping_padding_gives_the_same_logits_and_gradients(attn_impl, masked_only) -> None:
    """fp32, as trained: MLM and NSP logits and every gradient within 1e-6 of the padded path."""
    ids, segments, mask, masked = _padded_pretraining_batch()
    results = []
    for skip in (False, True):
        torch.manual_seed(0)
        model = BertForPreTraining(
            VOCAB,
            **SIZES,
            attn_impl=attn_impl,
            last_layer_masked_only=masked_only,
            skip_padding=skip,
        )
        mlm, nsp = model(ids, segments, mask, masked_positions=masked)
        loss = nn.functional.cross_entropy(mlm, ids[masked]) + nsp.logsumexp(-1).sum()
        loss.backward()
        results.append((mlm, nsp, {n: p.grad for n, p in model.named_parameters()}))
    (mlm, nsp, grads), (fast_mlm, fast_nsp, fast_grads) = results
    torch.testing.assert_close(fast_mlm, mlm, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast_nsp, nsp, rtol=1e-6, atol=1e-6)
    for name, grad in fast_grads.items():
        torch.testing.assert_close(grad, grads[name], rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_a_packed_encoder_gives_the_real_rows_and_zeros_at_padding(norm_first: bool) -> None:
    torch.manual_seed(0)
    sizes = (2, 32, 4, 48)
    plain = Encoder(EncoderConfig(*sizes, dropout=0.0, norm_first=norm_first)).double()
    packed = Encoder(
        EncoderConfig(*sizes, dropout=0.0, norm_first=norm_first, skip_padding=True)
    ).double()
    packed.load_state_dict(plain.state_dict())
    x = torch.randn(3, 7, 32).double()
    mask = torch.arange(7) < torch.tensor([[7], [4], [1]])
    full, _ = plain(x, mask=mask)
    fast, _ = packed(x, mask=mask)
    torch.testing.assert_close(fast[mask], full[mask])
    assert fast[~mask].abs().max() == 0
    torch.testing.assert_close(packed(x, mask=mask, causal=True)[0], plain(x, mask, True)[0])


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_encoder_output_rows_are_those_rows_of_the_full_output(norm_first: bool) -> None:
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(2, 32, 4, 48, dropout=0.0, norm_first=norm_first)).double()
    x = torch.randn(2, 7, 32).double()
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    rows = torch.tensor([[0, 6, 2], [0, 1, 3]])
    full, _ = encoder(x, mask=mask)
    some, _ = encoder(x, mask=mask, output_rows=rows)
    torch.testing.assert_close(some, full.gather(1, rows[..., None].expand(-1, -1, 32)))
    with pytest.raises(ValueError, match="rows= needs bidirectional attention"):
        encoder(x, causal=True, output_rows=rows)


def test_fused_qkv_is_used_for_self_attention_only() -> None:
    attention = _bert().bert.encoder.layers[0].attention
    calls = []
    attention.query.register_forward_hook(lambda *_: calls.append("query"))
    x, memory = torch.randn(2, 3, 32).double(), torch.randn(2, 5, 32).double()
    attention(x)
    assert calls == []  # fused: F.linear on the stacked weights, not the query layer
    cross, _ = attention(x, memory)
    assert calls == ["query"] and cross.shape == (2, 3, 32)


def _task(net: nn.Module, **kwargs) -> BaseTask:
    optimizer = torch.optim.AdamW
    return BaseTask(net=net, optimizer=lambda params: optimizer(params, weight_decay=0.1), **kwargs)


def test_no_decay_groups_hold_biases_and_norms_once() -> None:
    task = _task(_bert(), no_decay_norm_and_bias=True)
    decay, no_decay = task.configure_optimizers().param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in task.named_parameters()}  # tied decoder listed once
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert len(decayed) + len(not_decayed) == len(names)
    assert all(n.endswith("bias") or "norm" in n for n in not_decayed), not_decayed
    assert "net.bert.embeddings.norm.weight" in not_decayed
    assert "net.bert.encoder.layers.0.attention.query.weight" in decayed
    assert "net.bert.embeddings.word_embeddings.weight" in decayed
    plain = _task(_bert()).configure_optimizers()
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] == 0.1


def test_fused_adamw_matches_the_for_loop_adamw() -> None:
    models = [_bert(), _bert()]  # float64: the key bias gets only rounding noise as gradient
    optimizers = [
        torch.optim.AdamW(_task(m, no_decay_norm_and_bias=True).parameter_groups(), lr=1e-2, **kw)
        for m, kw in zip(models, [{"foreach": False}, {"fused": True}], strict=True)
    ]
    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            _mlm_loss(model).backward()
            optimizer.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "compile_option",
    [
        {"backend": "aot_eager"},  # dynamo + AOT autograd without inductor's C++ build: seconds
        pytest.param(True, marks=pytest.mark.slow),  # inductor: ~30 s on one CPU thread
    ],
)
def test_compile_keeps_the_state_dict_names_and_the_loss(compile_option) -> None:
    eager = _bert().float()
    compiled = _bert().float()
    task = _task(compiled, compile=compile_option)
    task.configure_model()
    compiled_call = compiled._compiled_call_impl
    assert compiled_call is not None  # nn.Module.compile: compiled in place
    task.configure_model()  # called again by trainer.test after trainer.fit
    assert compiled._compiled_call_impl is compiled_call  # not compiled twice
    assert list(task.net.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefix
    eager_loss, eager_grads = _loss_and_grads(eager)
    compiled_loss, compiled_grads = _loss_and_grads(compiled)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for name, grad in eager_grads.items():
        if grad is None:  # the pooler gets no gradient from the MLM loss
            assert compiled_grads[name] is None or not compiled_grads[name].any(), name
        else:
            torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


BERT_FDR = ["experiment=bert_mlm", "debug=fdr", "data.batch_size=4", "data.max_seq_length=32"]


@pytest.mark.slow
def test_a_compiled_run_checkpoint_loads_into_an_uncompiled_model(
    compose, trainer_spy, tmp_path
) -> None:
    cfg = compose([*BERT_FDR, "task.compile=true"])
    pipeline.train(cfg)
    trainer = trainer_spy.trainer
    assert trainer.lightning_module.net._compiled_call_impl is not None
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert not any("_orig_mod" in key for key in state)
    plain = pipeline.build(compose([*BERT_FDR]))[1]
    plain.load_state_dict(state)  # strict: every name matches
    torch.testing.assert_close(plain.state_dict(), trainer.lightning_module.state_dict())


def test_bert_trains_a_step_under_bf16_mixed_on_cpu(compose, trainer_spy) -> None:
    cfg = compose([*BERT_FDR, "trainer=cpu", "trainer.precision=bf16-mixed"])
    pipeline.train(cfg)
    trainer = trainer_spy.trainer
    assert trainer.precision == "bf16-mixed" and trainer.global_step == 1  # one optimizer step
    assert math.isfinite(trainer_spy.metrics()["test/loss"])
    parameters = list(trainer.lightning_module.parameters())
    assert all(p.dtype == torch.float32 and p.isfinite().all() for p in parameters)  # fp32 masters


def test_bf16_autocast_loss_is_close_to_the_float32_loss() -> None:
    """On a CPU in bf16, sdpa takes the explicit matmuls (faster there): the math path's loss."""
    model, math = _bert().float(), _bert(attn_impl="math").float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _mlm_loss(model)
        torch.testing.assert_close(loss, _mlm_loss(math), rtol=0, atol=0)
        x = torch.randn(2, 5, 32)
        assert model.bert.encoder.layers[0].attention(x)[1] is None  # still sdpa's contract
    torch.testing.assert_close(loss.float(), _mlm_loss(model), rtol=2e-2, atol=0)
