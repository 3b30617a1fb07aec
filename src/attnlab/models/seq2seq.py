"""Seq2Seq: the RNN encoder-decoder translation model, without and with cross-attention.

It puts together ``RNNEncoder`` and ``RNNDecoder`` of ``attnlab.models.rnn`` into the model a
translation task trains and decodes: teacher forcing (optionally feeding its own predictions),
greedy decoding and beam search, each returning the attention alignments when there are any.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from attnlab.models.rnn import RNNDecoder, RNNEncoder, _map_state


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
        """Beam search per sentence -> ids (B, T) and alignments (B, T, S) or None, as greedy.

        Keeps the ``beam_size`` best partial translations by summed log-probability; one that
        emits EOS (or reaches ``max_len``) is finished, and search stops once ``beam_size`` are.
        The best finished one by score / length ** ``length_penalty`` wins (0: raw sum, which
        favours short outputs; 1: mean log-probability per token). With beam 1 this is greedy.
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1 (got {beam_size})")
        results = []
        for row in range(src_ids.size(0)):
            length = int(src_mask[row].sum())
            results.append(
                self._beam_one(
                    src_ids[row : row + 1, :length],
                    src_mask[row : row + 1, :length],
                    beam_size,
                    length_penalty,
                    max_len or self.max_len,
                )
            )
        ids = pad_sequence([r[0] for r in results], batch_first=True, padding_value=self.tgt_pad_id)
        if results[0][1] is None:
            return ids, None
        alignments = torch.zeros(len(results), ids.size(1), src_ids.size(1), device=ids.device)
        for row, (_, alignment) in enumerate(results):
            alignments[row, : alignment.size(0), : alignment.size(1)] = alignment
        return ids, alignments

    def _beam_one(
        self, src_ids: Tensor, src_mask: Tensor, beam_size: int, length_penalty: float, max_len: int
    ) -> tuple[Tensor, Tensor | None]:
        """Beam search for one sentence (1, S): the best hypothesis' ids (T,), alignment (T, S)."""
        memory, state = self.encoder(src_ids, src_mask)
        keys = self.decoder.keys(memory)
        device = src_ids.device
        prev = torch.tensor([self.bos_id], device=device)
        scores = torch.zeros(1, device=device)  # summed log-probabilities of the live beams
        history = torch.empty(1, 0, dtype=torch.long, device=device)  # (k, t) tokens so far
        aligned = memory.new_zeros(1, 0, src_ids.size(1))  # (k, t, S) their attention rows
        finished = []  # (normalised score, ids, alignment)
        for step in range(max_len):
            k = prev.size(0)
            expand = [memory.expand(k, -1, -1), keys.expand(k, -1, -1), src_mask.expand(k, -1)]
            y = self.decoder.embed(prev)
            features, state, alpha = self.decoder.step(y, state, *expand)
            log_probs = self.decoder.logits(features).log_softmax(-1)  # (k, V)
            vocab = log_probs.size(-1)
            # at most k candidates end in EOS, so beam_size + k always refill the beam
            totals = (scores[:, None] + log_probs).flatten()
            top_scores, top = totals.topk(min(beam_size + k, k * vocab))
            keep = []
            for score, index in zip(top_scores.tolist(), top.tolist(), strict=True):
                origin, token = divmod(index, vocab)
                if token == self.eos_id or step == max_len - 1:
                    ids = torch.cat([history[origin], history.new_tensor([token])])
                    rows = (
                        None if alpha is None else torch.cat([aligned[origin], alpha[origin, None]])
                    )
                    finished.append((score / len(ids) ** length_penalty, ids, rows))
                else:
                    keep.append((origin, token, score))
                if len(keep) == beam_size:
                    break
            if len(finished) >= beam_size or not keep:
                break
            origins = torch.tensor([o for o, _, _ in keep], device=device)
            prev = torch.tensor([t for _, t, _ in keep], device=device)
            scores = torch.tensor([s for _, _, s in keep], device=device)
            state = _map_state(state, lambda s, o=origins: s.index_select(1, o))
            history = torch.cat([history[origins], prev[:, None]], dim=1)
            if alpha is not None:
                aligned = torch.cat([aligned[origins], alpha[origins, None]], dim=1)
        _, ids, alignment = max(finished, key=lambda f: f[0])
        return ids, alignment


def _stack_or_none(alphas: list[Tensor | None]) -> Tensor | None:
    """Per-step attention rows (B, S) -> (B, T, S); None for a decoder without attention."""
    return None if alphas[0] is None else torch.stack(alphas, dim=1)
