"""Recurrent models: the baseline attention was invented to fix.

An RNN reads a sequence one step at a time, carrying everything it knows in a fixed-size state;
these modules are the reference point for the attention models (quality, and throughput against
sequence length). ``Seq2Seq`` is the RNN encoder-decoder for translation, with and without the
cross-attention of Bahdanau et al. (2015).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from attnlab.models.attention import build_score, masked_softmax

RNN_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNNLM(nn.Module):
    """Embed, stacked LSTM/GRU, project to the vocabulary: ids (B, T) -> logits (B, T, V).

    Dropout is applied to the embeddings, between layers, and to the last layer's outputs.
    ``tie_weights`` shares the embedding with the output layer (Press & Wolf, 2017), which needs
    hidden_dim == embed_dim.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.1,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if cell not in RNN_CELLS:
            raise ValueError(f"unknown cell '{cell}'; choose one of {list(RNN_CELLS)}")
        if tie_weights and hidden_dim != embed_dim:
            raise ValueError(
                f"tie_weights needs hidden_dim == embed_dim (got {hidden_dim} != {embed_dim}); "
                "set them equal or use tie_weights=False"
            )
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CELLS[cell](
            embed_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.lm_head = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            self.lm_head.weight = self.embedding.weight

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids (B, T) -> logits (B, T, vocab_size).

        ``mask`` is accepted so every LM shares one signature, and is not needed: with right
        padding, a left-to-right RNN reaches the padding only after the last real token, so
        logits at real positions are unaffected (those at padding must be ignored by the loss).
        """
        hidden, _ = self.rnn(self.dropout(self.embedding(ids)))
        return self.lm_head(self.dropout(hidden))


# --- Sequence to sequence: an RNN encoder-decoder, without and with cross-attention ------------
#
# A recurrent state is a tensor (layers, B, H) for a GRU and a pair (h, c) of them for an LSTM.
State = Tensor | tuple[Tensor, Tensor]


def _check_cell(cell: str) -> None:
    if cell not in RNN_CELLS:
        raise ValueError(f"unknown cell '{cell}'; choose one of {list(RNN_CELLS)}")


def _map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """``fn`` applied to the hidden (and LSTM cell) tensor of a state."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def _top(state: State) -> Tensor:
    """The hidden state of the top layer, (B, H): the decoder's s_{m-1}."""
    return (state[0] if isinstance(state, tuple) else state)[-1]


class RNNEncoder(nn.Module):
    """Source ids (B, S) -> every state h_i (B, S, D) and a start state for the decoder.

    The sequences are packed, so padding is never read: h_i and the final state of a sentence do
    not depend on how long its batch is (h_i is 0 on padding). D = hidden_dim x directions. The
    final state of each layer, [h_fwd(last token); h_bwd(first token)] when bidirectional, goes
    through a Linear ``bridge`` + tanh to the decoder's size (none when the sizes already match).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.1,
        decoder_dim: int | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        _check_cell(cell)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CELLS[cell](
            embed_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.output_dim = hidden_dim * self.directions
        decoder_dim = decoder_dim or hidden_dim
        fits = self.output_dim == decoder_dim and not bidirectional
        self.bridge = None if fits else nn.Linear(self.output_dim, decoder_dim)

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, State]:
        """ids (B, S), mask (B, S) True on real tokens -> states (B, S, D), decoder start state."""
        lengths = mask.sum(-1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.dropout(self.embedding(ids)), lengths, batch_first=True, enforce_sorted=False
        )
        packed_states, final = self.rnn(packed)
        states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=ids.size(1))
        return states, _map_state(final, self._to_decoder)

    def _to_decoder(self, final: Tensor) -> Tensor:
        """(layers x directions, B, H) -> (layers, B, decoder_dim): directions side by side."""
        layers, batch = self.rnn.num_layers, final.size(1)
        final = final.view(layers, self.directions, batch, -1).transpose(1, 2)
        final = final.reshape(layers, batch, self.output_dim)
        return final if self.bridge is None else torch.tanh(self.bridge(final))


class RNNDecoder(nn.Module):
    """Predicts the target one token at a time, starting from the encoder's final state.

    Without ``attention`` (the seed's plain decoder), s_m = RNN(s_{m-1}, y_{m-1}): the source
    reaches the decoder only through its start state s_0. With ``attention`` (a score name of
    ``attnlab.models.attention``), at every step m:

        e_mi = score(s_{m-1}, h_i)             for every source state h_i
        alpha_m = softmax_i(e_mi)              over real source tokens (padding gets 0)
        c_m = sum_i alpha_mi h_i               the context vector
        s_m = RNN(s_{m-1}, [y_{m-1}; c_m])

    The next token is read from [s_m; c_m; y_{m-1}] (Bahdanau et al., 2015) through a tanh layer
    of ``output_dim`` and a projection to the vocabulary.

    With ``key_dim`` the score meets k_i = W h_i, projected once per sentence, instead of h_i.
    For the mlp score, v^T tanh(W_q s + W_k k_i) is the same score with W_k factored through
    ``key_dim`` (no loss when key_dim >= attention_dim); dot and cosine need it when h_i and
    s_{m-1} differ in size (a bidirectional encoder). Whatever the score does to the keys alone
    (W_k k_i, normalising) is done once per sentence too (``keys``), not at every step: it was
    the largest cost of the attention.
    """

    def __init__(
        self,
        vocab_size: int,
        memory_dim: int,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 1,
        cell: str = "gru",
        attention: str | None = "mlp",
        attention_dim: int | None = None,
        key_dim: int | None = None,
        output_dim: int | None = None,
        dropout: float = 0.1,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        _check_cell(cell)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.key_proj = None
        if attention and key_dim:
            self.key_proj = nn.Linear(memory_dim, key_dim, bias=False)
        self.score = (
            build_score(attention, hidden_dim, key_dim or memory_dim, attention_dim)
            if attention
            else None
        )
        context_dim = memory_dim if attention else 0
        cell_type = nn.GRUCell if cell == "gru" else nn.LSTMCell
        self.cells = nn.ModuleList(
            cell_type(embed_dim + context_dim if layer == 0 else hidden_dim, hidden_dim)
            for layer in range(num_layers)
        )
        output_dim = output_dim or embed_dim
        self.pre_output = nn.Linear(hidden_dim + context_dim + embed_dim, output_dim)
        self.output = nn.Linear(output_dim, vocab_size)

    def embed(self, ids: Tensor) -> Tensor:
        """Token ids (...) -> the embeddings y (..., embed_dim) the steps take."""
        return self.dropout(self.embedding(ids))

    def keys(self, memory: Tensor) -> Tensor:
        """What every step's score compares s_{m-1} with, prepared once per sentence: h_i, or
        k_i = W h_i (``key_dim``), through the score's own key-side part (``Score.prepare``)."""
        keys = memory if self.key_proj is None else self.key_proj(memory)
        return keys if self.score is None else self.score.prepare(keys)

    def step(
        self, y: Tensor, state: State, memory: Tensor, keys: Tensor, memory_mask: Tensor
    ) -> tuple[Tensor, State, Tensor | None]:
        """One step: y_{m-1} (B, E), s_{m-1}, h (B, S, D), mask (B, S) -> features, s_m, alpha_m.

        ``features`` (B, F) feed ``logits``; alpha_m (B, S) is None without attention. The
        caller embeds y_{m-1} (``embed``): teacher forcing embeds the whole target at once, as
        one embedding lookup per step would make each backward pass build a dense (V, E)
        gradient per step.
        """
        inputs, context, alpha = y, None, None
        if self.score is not None:
            scores = self.score.compare(_top(state).unsqueeze(1), keys)  # (B, 1, S)
            alpha = masked_softmax(scores, memory_mask.unsqueeze(1))
            context = (alpha @ memory).squeeze(1)  # (B, D)
            alpha = alpha.squeeze(1)
            inputs = torch.cat([y, context], dim=-1)
        layers = []
        for layer, cell in enumerate(self.cells):
            layer_state = cell(inputs, _map_state(state, lambda s, i=layer: s[i]))
            layers.append(layer_state)
            top = layer_state[0] if isinstance(layer_state, tuple) else layer_state
            inputs = self.dropout(top)  # to the next layer (and, after the last, to the output)
        state = (
            tuple(torch.stack(parts) for parts in zip(*layers, strict=True))
            if isinstance(layers[0], tuple)
            else torch.stack(layers)
        )
        features = [inputs, y] if context is None else [inputs, context, y]
        return torch.cat(features, dim=-1), state, alpha

    def logits(self, features: Tensor) -> Tensor:
        """features (..., F) -> next-token logits (..., vocab_size)."""
        return self.output(self.dropout(torch.tanh(self.pre_output(features))))


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
        self.encoder = RNNEncoder(
            src_vocab_size,
            embed_dim,
            hidden_dim,
            num_layers,
            cell,
            bidirectional,
            dropout,
            decoder_dim=hidden_dim,
            pad_id=src_pad_id,
        )
        self.decoder = RNNDecoder(
            tgt_vocab_size,
            self.encoder.output_dim,
            embed_dim,
            hidden_dim,
            num_layers,
            cell,
            attention,
            attention_dim,
            key_dim,
            output_dim,
            dropout,
            tgt_pad_id,
        )

    def forward(
        self, src_ids: Tensor, src_mask: Tensor, tgt_ids: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding: logits (B, T, V) and alignments (B, T, S) or None.

        ``tgt_ids`` (B, T) are the decoder inputs [BOS, y_1, ..., y_{T-1}]; the logits at step m
        predict y_{m+1}. With ``teacher_forcing`` < 1 each step feeds, with that probability, the
        true previous token, else the model's own prediction (the same choice for the batch).
        """
        memory, state = self.encoder(src_ids, src_mask)
        keys = self.decoder.keys(memory)
        own_predictions = teacher_forcing < 1.0
        inputs = self.decoder.embed(tgt_ids)  # (B, T, E)
        y, outputs, alphas = inputs[:, 0], [], []
        for m in range(tgt_ids.size(1)):
            features, state, alpha = self.decoder.step(y, state, memory, keys, src_mask)
            outputs.append(self.decoder.logits(features) if own_predictions else features)
            alphas.append(alpha)
            if m + 1 < tgt_ids.size(1):
                y = inputs[:, m + 1]
                if own_predictions and torch.rand(()) >= teacher_forcing:
                    y = self.decoder.embed(outputs[-1].argmax(-1))
        outputs = torch.stack(outputs, dim=1)
        logits = outputs if own_predictions else self.decoder.logits(outputs)
        return logits, _stack_or_none(alphas)

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
