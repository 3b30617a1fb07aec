"""RNN encoder-decoder: shapes, attention weights (a distribution over real source tokens only),
padding invariance, greedy == beam search with beam 1, the batched beam search == the textbook
search of each sentence alone, and where beam outputs end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.models.attention import SCORE_FUNCTIONS
from attnlab.models.rnn import RNNDecoder, RNNEncoder
from attnlab.models.seq2seq import Seq2Seq

SRC_VOCAB, TGT_VOCAB = 40, 30
PAD, BOS, EOS = 0, 1, 2
ATTENTIONS = [None, *SCORE_FUNCTIONS]


def _model(attention: str | None = "mlp", **kwargs) -> Seq2Seq:
    torch.manual_seed(0)
    options = {
        "embed_dim": 16,
        "hidden_dim": 16,
        "attention": attention,
        "attention_dim": 8,
        "dropout": 0.0,
        "max_len": 12,
    }
    if attention in ("dot", "cosine"):  # these compare s with h directly: project h to s's size
        options["key_dim"] = 16
    return Seq2Seq(SRC_VOCAB, TGT_VOCAB, BOS, EOS, **(options | kwargs)).eval()


def _batch(lengths: list[int], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random source ids (no PAD/BOS/EOS) right-padded to ``width``, and the mask."""
    width = width or max(lengths)
    ids = torch.randint(3, SRC_VOCAB, (len(lengths), width))
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, PAD), mask


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_shapes(attention: str | None, cell: str, num_layers: int) -> None:
    model = _model(attention, cell=cell, num_layers=num_layers)
    src, mask = _batch([5, 3, 7])
    tgt = torch.randint(3, TGT_VOCAB, (3, 6))
    logits, alignments = model(src, mask, tgt)
    assert logits.shape == (3, 6, TGT_VOCAB)
    if attention is None:
        assert alignments is None
    else:
        assert alignments.shape == (3, 6, 7)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_encoder_states_and_bridge(bidirectional: bool, cell: str) -> None:
    torch.manual_seed(0)
    encoder = RNNEncoder(SRC_VOCAB, 8, 12, 2, cell, bidirectional, decoder_dim=10).eval()
    src, mask = _batch([4, 6])
    states, final = encoder(src, mask)
    assert states.shape == (2, 6, 12 * (2 if bidirectional else 1))
    assert (states[~mask] == 0).all()  # padding is never read
    for part in final if cell == "lstm" else (final,):
        assert part.shape == (2, 2, 10)  # (layers, batch, decoder size)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_gru_encoder_equals_the_packed_gru(bidirectional: bool, num_layers: int) -> None:
    """The padded run with per-sentence reversal gives torch's packed states, final states and
    gradients (float64)."""
    torch.manual_seed(0)
    encoder = RNNEncoder(SRC_VOCAB, 8, 12, num_layers, "gru", bidirectional, dropout=0.0)
    encoder = encoder.double()
    lengths = [9, 3, 1, 6, 2]
    src, mask = _batch(lengths)
    states, final = encoder(src, mask)
    packed = pack_padded_sequence(
        encoder.embedding(src), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    packed_states, packed_final = encoder.rnn(packed)
    reference = pad_packed_sequence(packed_states, batch_first=True)[0]
    reference_final = encoder._to_decoder(packed_final)
    torch.testing.assert_close(states, reference, atol=1e-12, rtol=0)
    torch.testing.assert_close(final, reference_final, atol=1e-12, rtol=0)
    weights = list(encoder.rnn.parameters())
    grads = torch.autograd.grad(states.sin().sum() + final.square().sum(), weights)
    reference_loss = reference.sin().sum() + reference_final.square().sum()
    for grad, expected in zip(grads, torch.autograd.grad(reference_loss, weights), strict=True):
        torch.testing.assert_close(grad, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_the_loss_equals_cross_entropy_on_the_logits(label_smoothing: float) -> None:
    """``loss`` (projection on real target rows only, in chunks) against ``F.cross_entropy`` on
    ``forward``'s logits: the loss, the unsmoothed nll and every gradient (float64)."""
    model = _model("mlp").double()
    src, mask = _batch([5, 3, 7])
    tgt = torch.randint(3, TGT_VOCAB, (3, 7))
    tgt[1, 4:] = PAD
    inputs, labels = tgt[:, :-1], tgt[:, 1:]
    logits, _ = model(src, mask, inputs)
    flat = logits.flatten(0, 1), labels.flatten()
    expected = F.cross_entropy(*flat, ignore_index=PAD, label_smoothing=label_smoothing)
    expected_nll = F.cross_entropy(*flat, ignore_index=PAD)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()), allow_unused=True)
    loss, nll = model.loss(src, mask, inputs, labels, label_smoothing=label_smoothing)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(nll, expected_nll.detach(), atol=1e-12, rtol=0)
    for grad, want in zip(grads, expected_grads, strict=True):
        if want is None:
            assert grad is None
        else:
            torch.testing.assert_close(grad, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("attention", SCORE_FUNCTIONS)
def test_attention_is_a_distribution_over_real_source_tokens(attention: str) -> None:
    model = _model(attention)
    lengths = [6, 2, 4, 1]
    src, mask = _batch(lengths, width=8)
    tgt = torch.randint(3, TGT_VOCAB, (4, 5))
    _, alignments = model(src, mask, tgt)
    torch.testing.assert_close(alignments.sum(-1), torch.ones(4, 5))
    padding = ~mask[:, None, :].expand_as(alignments)
    assert (alignments[padding] == 0).all()  # exactly zero on source padding
    assert (alignments[~padding] > 0).all()


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_source_padding_never_changes_outputs(attention: str | None) -> None:
    model = _model(attention)
    src, mask = _batch([5])
    tgt = torch.randint(3, TGT_VOCAB, (1, 6))
    alone = model(src, mask, tgt)
    garbage = torch.randint(3, SRC_VOCAB, (1, 4))  # whatever ids sit under the padding
    padded_src, padded_mask = (
        torch.cat([src, garbage], 1),
        torch.cat([mask, mask[:, :4] & False], 1),
    )
    padded = model(padded_src, padded_mask, tgt)
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=0)
    if attention is not None:
        torch.testing.assert_close(alone[1], padded[1][..., :5], atol=1e-6, rtol=0)
        assert (padded[1][..., 5:] == 0).all()
    # ... and in a batch beside a longer sentence, decoding gives the same tokens
    other, other_mask = _batch([9])
    batch_src = torch.cat([padded_src, other[:, :9]])
    batch_mask = torch.cat([padded_mask, other_mask[:, :9]])
    greedy_alone, _ = model.greedy_decode(src, mask)
    greedy_batch, _ = model.greedy_decode(batch_src, batch_mask)
    n = greedy_alone.size(1)
    assert torch.equal(greedy_batch[0, :n], greedy_alone[0])
    assert (greedy_batch[0, n:] == PAD).all()


def _trained_copy_model(attention: str | None) -> Seq2Seq:
    """A model that learned to copy-shift a toy language a little: non-uniform, EOS reachable."""
    model = _model(attention).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        lengths = torch.randint(2, 7, (16,), generator=generator).tolist()
        src = torch.randint(3, TGT_VOCAB, (16, 6), generator=generator)
        mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
        src = src.masked_fill(~mask, PAD)
        tgt = [[BOS, *src[i, :n].tolist(), EOS] for i, n in enumerate(lengths)]
        tgt = torch.tensor([t + [PAD] * (8 - len(t)) for t in tgt])
        logits, _ = model(src, mask, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("attention", [None, "mlp"])
def test_greedy_equals_beam_search_with_beam_one(attention: str | None) -> None:
    model = _trained_copy_model(attention)
    src, mask = _batch([5, 2, 6, 3, 4])
    greedy_ids, greedy_alignments = model.greedy_decode(src, mask)
    beam_ids, beam_alignments = model.beam_search(src, mask, beam_size=1)
    assert (greedy_ids == EOS).any(), "the toy model never stops: the test would be vacuous"
    width = max(greedy_ids.size(1), beam_ids.size(1))
    pad = torch.nn.functional.pad
    assert torch.equal(pad(greedy_ids, (0, width - greedy_ids.size(1)), value=PAD), beam_ids)
    if attention is not None:
        expected = pad(greedy_alignments, (0, 0, 0, width - greedy_alignments.size(1)))
        torch.testing.assert_close(expected, beam_alignments)


@pytest.mark.parametrize("attention", [None, "mlp"])
@pytest.mark.parametrize("beam_size", [2, 4])
@pytest.mark.parametrize("max_len", [3, 12])
def test_beam_outputs_end_in_eos_or_at_max_length(
    attention: str | None, beam_size: int, max_len: int
) -> None:
    model = _trained_copy_model(attention)
    src, mask = _batch([5, 2, 6, 1])
    ids, alignments = model.beam_search(src, mask, beam_size=beam_size, max_len=max_len)
    assert ids.size(1) <= max_len
    for row in ids.tolist():
        real = [t for t in row if t != PAD]
        assert row[: len(real)] == real  # padding only at the end
        assert EOS not in real[:-1]
        assert real[-1] == EOS or len(real) == max_len
    if attention is not None:
        assert alignments.shape == (4, ids.size(1), 6)
        real = ids != PAD
        torch.testing.assert_close(alignments.sum(-1)[real], torch.ones(int(real.sum())))


def _beam_alone(
    model: Seq2Seq, src: torch.Tensor, beam_size: int, length_penalty: float, max_len: int
) -> tuple[list[int], torch.Tensor | None]:
    """The textbook beam search of one unpadded sentence (1, S), hypothesis by hypothesis: the
    best finished ids and their attention rows (T, S)."""
    memory, state = model.encoder(src, torch.ones_like(src, dtype=torch.bool))
    keys = model.decoder.keys(memory)
    live = [(0.0, [], [], state)]  # (summed log-probability, ids, attention rows, state)
    finished = []  # (normalised score, ids, attention rows)
    for step in range(max_len):
        candidates = []
        for score, ids, rows, state in live:
            y = model.decoder.embed(torch.tensor([ids[-1] if ids else BOS]))
            mask = torch.ones_like(src, dtype=torch.bool)
            features, new_state, alpha = model.decoder.step(y, state, memory, keys, mask)
            log_probs = model.decoder.logits(features).log_softmax(-1)[0]
            new_rows = rows if alpha is None else [*rows, alpha[0]]
            for token, log_prob in enumerate(log_probs.tolist()):
                candidates.append((score + log_prob, [*ids, token], new_rows, new_state))
        live = []
        for score, ids, rows, state in sorted(candidates, key=lambda c: -c[0]):
            if ids[-1] == EOS or step == max_len - 1:
                finished.append((score / len(ids) ** length_penalty, ids, rows))
            else:
                live.append((score, ids, rows, state))
            if len(live) == beam_size:
                break
        if len(finished) >= beam_size or not live:
            break
    _, ids, rows = max(finished, key=lambda f: f[0])
    return ids, torch.stack(rows) if rows else None


@pytest.mark.parametrize("attention", [None, "mlp"])
@pytest.mark.parametrize(("beam_size", "length_penalty", "max_len"), [(2, 1.0, 12), (4, 0.0, 5)])
def test_batched_beam_search_equals_the_textbook_search_of_each_sentence(
    attention: str | None, beam_size: int, length_penalty: float, max_len: int
) -> None:
    """All sentences' beams searched as one batch give each sentence the hypothesis and
    alignment that searching it alone, one hypothesis at a time, gives."""
    model = _trained_copy_model(attention)
    src, mask = _batch([5, 2, 6, 3, 4, 6])
    ids, alignments = model.beam_search(src, mask, beam_size, length_penalty, max_len)
    for row, length in enumerate(mask.sum(1).tolist()):
        expected_ids, expected_rows = _beam_alone(
            model, src[row : row + 1, :length], beam_size, length_penalty, max_len
        )
        real = ids[row] != PAD
        assert ids[row, real].tolist() == expected_ids
        assert not real[len(expected_ids) :].any()
        if attention is not None:
            steps = len(expected_ids)
            torch.testing.assert_close(alignments[row, :steps, :length], expected_rows)
            assert (alignments[row, steps:] == 0).all() and (alignments[row, :, length:] == 0).all()


def test_beam_search_finds_a_translation_at_least_as_likely_as_greedy() -> None:
    model = _trained_copy_model("mlp")
    src, mask = _batch([6, 4, 5])

    def log_prob(ids: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([torch.full((ids.size(0), 1), BOS), ids[:, :-1]], 1)
        logits, _ = model(src, mask, inputs)
        scores = logits.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)
        return (scores * (ids != PAD)).sum(-1)

    greedy, _ = model.greedy_decode(src, mask)
    beam, _ = model.beam_search(src, mask, beam_size=5, length_penalty=0.0)
    assert (log_prob(beam) >= log_prob(greedy) - 1e-4).all()


def test_teacher_forcing_zero_feeds_the_models_own_predictions() -> None:
    model = _trained_copy_model("mlp")
    src, mask = _batch([5, 3])
    greedy, _ = model.greedy_decode(src, mask, max_len=6)
    bos = torch.full((2, 1), BOS)
    junk = torch.randint(3, TGT_VOCAB, (2, greedy.size(1) - 1))  # ignored at ratio 0
    logits, _ = model(src, mask, torch.cat([bos, junk], 1), teacher_forcing=0.0)
    steps = logits.argmax(-1)
    done = torch.cumsum(greedy == EOS, 1) - (greedy == EOS).long() > 0  # after the first EOS
    assert torch.equal(steps[~done], greedy[~done])


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        _model(cell="rnn")
    with pytest.raises(ValueError, match="unknown score function 'nope'"):
        _model("nope")
    with pytest.raises(ValueError, match="sizes must match"):
        RNNDecoder(TGT_VOCAB, memory_dim=32, hidden_dim=16, attention="dot")
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        _model().beam_search(*_batch([3]), beam_size=0)
