"""Seq2Seq: the RNN encoder-decoder translation model, without and with cross-attention.

It puts together ``RNNEncoder`` and ``RNNDecoder`` of ``attnlab.models.rnn`` into the model a
translation task trains and decodes: teacher forcing (optionally feeding its own predictions),
greedy decoding and beam search, each returning the attention alignments when there are any.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.rnn import RNNDecoder, RNNEncoder, State, _map_state


class Seq2Seq(nn.Module):
    """RNN encoder-decoder for translation; ``attention=None`` is the no-attention baseline.

    The decoder has the encoder's depth and cell; its start state is the encoder's final state
    (through the bridge). Decoding (``greedy_decode``, ``beam_search``) runs the model as it is:
    call ``.eval()`` first so dropout is off.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        bos_id: int,
        eos_id: int,
        src_pad_id: int = 0,
        tgt_pad_id: int = 0,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        attention: str | None = "mlp",
        attention_dim: int | None = None,
        key_dim: int | None = None,
        output_dim: int | None = None,
        dropout: float = 0.1,
        max_len: int = 100,
    ) -> None:
        super().__init__()
        self.bos_id, self.eos_id, self.tgt_pad_id = bos_id, eos_id, tgt_pad_id
        self.max_len = max_len
        shared = {"embed_dim": embed_dim, "hidden_dim": hidden_dim, "num_layers": num_layers}
        shared |= {"cell": cell, "dropout": dropout}  # the decoder has the encoder's depth and cell
        self.encoder = RNNEncoder(
            src_vocab_size,
            bidirectional=bidirectional,
            decoder_dim=hidden_dim,
            pad_id=src_pad_id,
            **shared,
        )
        self.decoder = RNNDecoder(
            tgt_vocab_size,
            self.encoder.output_dim,
            attention=attention,
            attention_dim=attention_dim,
            key_dim=key_dim,
            output_dim=output_dim,
            pad_id=tgt_pad_id,
            **shared,
        )

    def forward(
        self, src_ids: Tensor, src_mask: Tensor, tgt_ids: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding: logits (B, T, V) and alignments (B, T, S) or None.

        ``tgt_ids`` (B, T) are the decoder inputs [BOS, y_1, ..., y_{T-1}]; the logits at step m
        predict y_{m+1}. With ``teacher_forcing`` < 1 each step feeds, with that probability, the
        true previous token, else the model's own prediction (the same choice for the batch).
        """
        outputs, alignments, are_logits = self._teacher_forced(
            src_ids, src_mask, tgt_ids, teacher_forcing
        )
        return (outputs if are_logits else self.decoder.logits(outputs)), alignments

    def loss(
        self,
        src_ids: Tensor,
        src_mask: Tensor,
        tgt_ids: Tensor,
        labels: Tensor,
        teacher_forcing: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """The training loss of ``forward``'s logits against ``labels`` (B, T), the next tokens
        (``tgt_pad_id`` where there is none): (mean cross-entropy, mean -log p(label)), the
        second unsmoothed, for perplexity.

        Under teacher forcing the vocabulary projection runs on the real target positions only
        and chunk by chunk (``RNNDecoder.loss``): the same values and gradients as
        ``F.cross_entropy`` on the logits, without their (B x T, V) tensors.
        """
        outputs, _, are_logits = self._teacher_forced(src_ids, src_mask, tgt_ids, teacher_forcing)
        if not are_logits:
            real = labels != self.tgt_pad_id
            return self.decoder.loss(outputs[real], labels[real], label_smoothing)
        logits, labels = outputs.flatten(0, 1).float(), labels.flatten()
        pad = self.tgt_pad_id
        loss = F.cross_entropy(logits, labels, ignore_index=pad, label_smoothing=label_smoothing)
        return loss, F.cross_entropy(logits.detach(), labels, ignore_index=pad)

    def _teacher_forced(
        self, src_ids: Tensor, src_mask: Tensor, tgt_ids: Tensor, teacher_forcing: float
    ) -> tuple[Tensor, Tensor | None, bool]:
        """The decoder run over ``tgt_ids``: per-step outputs (B, T, ...), alignments, and
        whether the outputs are logits already (when a step may feed its own prediction) or the
        features ``RNNDecoder.logits`` takes."""
        memory, state = self.encoder(src_ids, src_mask)
        keys = self.decoder.keys(memory)
        own_predictions = teacher_forcing < 1.0
        # One view per step: backward stacks their gradients once, where indexing inputs[:, m]
        # would zero-fill and add a whole (B, T, E) gradient at every step.
        inputs = self.decoder.embed(tgt_ids).unbind(1)  # T x (B, E)
        y, outputs, alphas = inputs[0], [], []
        for m in range(tgt_ids.size(1)):
            features, state, alpha = self.decoder.step(y, state, memory, keys, src_mask)
            outputs.append(self.decoder.logits(features) if own_predictions else features)
            alphas.append(alpha)
            if m + 1 < tgt_ids.size(1):
                y = inputs[m + 1]
                if own_predictions and torch.rand(()) >= teacher_forcing:
                    y = self.decoder.embed(outputs[-1].argmax(-1))
        return torch.stack(outputs, dim=1), _stack_or_none(alphas), own_predictions

    @torch.no_grad()
    def greedy_decode(
        self, src_ids: Tensor, src_mask: Tensor, max_len: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The most likely next token at every step -> ids (B, T), alignments (B, T, S) or None.

        Each row ends at its first EOS (kept) and is padded after it; T <= ``max_len``.
        """
        memory, state = self.encoder(src_ids, src_mask)
        keys = self.decoder.keys(memory)
        batch = src_ids.size(0)
        prev = torch.full((batch,), self.bos_id, dtype=torch.long, device=src_ids.device)
        done = torch.zeros(batch, dtype=torch.bool, device=src_ids.device)
        tokens, alphas = [], []
        for _ in range(max_len or self.max_len):
            y = self.decoder.embed(prev)
            features, state, alpha = self.decoder.step(y, state, memory, keys, src_mask)
            prev = self.decoder.logits(features).argmax(-1).masked_fill(done, self.tgt_pad_id)
            tokens.append(prev)
            alphas.append(None if alpha is None else alpha * ~done[:, None])
            done = done | (prev == self.eos_id)
            if done.all():
                break
        return torch.stack(tokens, dim=1), _stack_or_none(alphas)

    @torch.no_grad()
    def beam_search(
        self,
        src_ids: Tensor,
        src_mask: Tensor,
        beam_size: int = 5,
        length_penalty: float = 1.0,
        max_len: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Beam search -> ids (B, T) and alignments (B, T, S) or None, as greedy.

        Each sentence keeps the ``beam_size`` best partial translations by summed
        log-probability; one that emits EOS (or reaches ``max_len``) is finished, and the
        sentence's search stops once ``beam_size`` are. The best finished one by score / length
        ** ``length_penalty`` wins (0: raw sum, which favours short outputs; 1: mean
        log-probability per token). With beam 1 this is greedy. All sentences search at once,
        as B x ``beam_size`` decoder rows: a batch takes as many steps as its longest output.
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1 (got {beam_size})")
        max_len = max_len or self.max_len
        batch, k, device = src_ids.size(0), beam_size, src_ids.device
        memory, state = self.encoder(src_ids, src_mask)
        keys = self.decoder.keys(memory)
        best = _BestFinished(batch, max_len, src_ids.size(1), self.tgt_pad_id, memory)
        alive = torch.arange(batch, device=device)  # the sentences still searching
        # row i * k + j is beam j of alive sentence i; finished sentences' rows are dropped
        memory, keys, mask, state = _select_rows(
            alive.repeat_interleave(k), memory, keys, src_mask, state
        )
        prev = torch.full((batch * k,), self.bos_id, device=device)
        scores = torch.full((batch, k), -torch.inf, device=device)  # summed log-probabilities
        scores[:, 0] = 0.0  # one live beam to start with
        history = prev.new_empty(batch, k, 0)  # (n, k, t) tokens so far
        aligned = memory.new_zeros(batch, k, 0, src_ids.size(1))  # (n, k, t, S) attention rows
        for step in range(max_len):
            n = alive.numel()
            y = self.decoder.embed(prev)
            features, state, alpha = self.decoder.step(y, state, memory, keys, mask)
            logits = self.decoder.logits(features).float()  # (n * k, V)
            # At most k candidates end in EOS, so the best 2k always refill the beam; they are
            # among the best 2k of their beam, so only those get their log-probability.
            width = min(2 * k, logits.size(-1))
            row_top, row_tokens = logits.topk(width, dim=-1)
            row_top = row_top - logits.logsumexp(-1, keepdim=True)
            totals = (scores[..., None] + row_top.view(n, k, width)).flatten(1)
            top_scores, top = totals.topk(min(2 * k, k * width), dim=1)  # (n, 2k), best first
            origin, token = top // width, row_tokens.view(n, k * width).gather(1, top)
            live = top_scores > -torch.inf
            ends = live & ((token == self.eos_id) | (step == max_len - 1))
            goes_on = live & ~ends
            # candidates are taken best first until k go on: those below are dropped
            ranked_above = goes_on.cumsum(1) - goes_on.long()
            ends, goes_on = ends & (ranked_above < k), goes_on & (ranked_above < k)
            if alpha is not None:
                aligned = torch.cat([aligned, alpha.view(n, k, 1, -1)], dim=2)
            normalised = top_scores / (step + 1) ** length_penalty
            best.add(
                step,
                alive,
                ends,
                normalised,
                origin,
                token,
                history,
                None if alpha is None else aligned,
            )
            stay = ((best.count[alive] < k) & goes_on.any(1)).nonzero().squeeze(1)
            if stay.numel() == 0:
                break
            if stay.numel() < n:  # some sentences are done: their rows leave the batch
                alive = alive[stay]
                rows = (stay[:, None] * k + torch.arange(k, device=device)).flatten()
                memory, keys, mask, state = _select_rows(rows, memory, keys, mask, state)
                origin, token, goes_on, top_scores = (
                    t[stay] for t in (origin, token, goes_on, top_scores)
                )
                history, aligned = history[stay], aligned[stay]
            # the k candidates that go on, in order, fill the beam (dead slots score -inf)
            slots = torch.sort((~goes_on).long(), dim=1, stable=True).indices[:, :k]
            origin, token = origin.gather(1, slots), token.gather(1, slots)
            scores = torch.where(goes_on.gather(1, slots), top_scores.gather(1, slots), -torch.inf)
            beams = torch.arange(alive.numel(), device=device)[:, None], origin
            flat = (beams[0] * k + origin).flatten()
            state = _map_state(state, lambda s, f=flat: s.index_select(1, f))
            history = torch.cat([history[beams], token[..., None]], dim=2)
            if alpha is not None:
                aligned = aligned[beams]
            prev = token.flatten()
        return best.result(self.decoder.score is not None)


class _BestFinished:
    """Per sentence, the best finished hypothesis of a beam search: its normalised score, its
    ids (EOS included) and attention rows, and how many hypotheses have finished."""

    def __init__(self, batch: int, max_len: int, src_len: int, pad_id: int, like: Tensor) -> None:
        self.score = like.new_full((batch,), -torch.inf, dtype=torch.float)
        self.count = torch.zeros(batch, dtype=torch.long, device=like.device)
        self.length = torch.zeros(batch, dtype=torch.long, device=like.device)
        self.ids = torch.full((batch, max_len), pad_id, device=like.device)
        self.alignment = like.new_zeros(batch, max_len, src_len)
        self.pad_id = pad_id

    def add(
        self,
        step: int,
        sentences: Tensor,
        ends: Tensor,
        normalised: Tensor,
        origin: Tensor,
        token: Tensor,
        history: Tensor,
        aligned: Tensor | None,
    ) -> None:
        """Candidates (n, 2k) of the n ``sentences`` that ``ends`` at ``step``: count them, and
        keep each sentence's best so far (``aligned``: None without attention)."""
        self.count[sentences] += ends.sum(1)
        score, which = normalised.masked_fill(~ends, -torch.inf).max(1)  # the first best
        better = (score > self.score[sentences]).nonzero().squeeze(1)
        if better.numel() == 0:
            return
        which, rows = which[better], sentences[better]
        beam, length = origin[better, which], step + 1
        self.score[rows] = score[better]
        self.length[rows] = length
        self.ids[rows] = self.pad_id
        self.ids[rows, :step] = history[better, beam]
        self.ids[rows, step] = token[better, which]
        if aligned is not None:
            self.alignment[rows] = 0.0
            self.alignment[rows, :length] = aligned[better, beam]

    def result(self, with_alignments: bool) -> tuple[Tensor, Tensor | None]:
        """ids (B, T) padded after each EOS, alignments (B, T, S) or None; T the longest."""
        longest = int(self.length.max())
        return self.ids[:, :longest], self.alignment[:, :longest] if with_alignments else None


def _select_rows(
    rows: Tensor, memory: Tensor, keys: Tensor, mask: Tensor, state: State
) -> tuple[Tensor, Tensor, Tensor, State]:
    """``rows`` of the encoder memory, keys and mask and of the decoder state (batch dim 1)."""
    return (
        memory[rows],
        keys[rows],
        mask[rows],
        _map_state(state, lambda s: s.index_select(1, rows)),
    )


def _stack_or_none(alphas: list[Tensor | None]) -> Tensor | None:
    """Per-step attention rows (B, S) -> (B, T, S); None for a decoder without attention."""
    return None if alphas[0] is None else torch.stack(alphas, dim=1)
