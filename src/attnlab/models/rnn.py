"""Recurrent models: the baseline attention was invented to fix.

An RNN reads a sequence one step at a time, carrying everything it knows in a fixed-size state;
these modules are the reference point for the attention models (quality, and throughput against
sequence length). ``RNNEncoder`` and ``RNNDecoder`` (with and without the cross-attention of
Bahdanau et al., 2015) are the parts that ``attnlab.models.seq2seq.Seq2Seq`` puts together.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.models.attention import build_score, masked_softmax
from attnlab.models.losses import linear_cross_entropy

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

    Padding is never read: h_i and the final state of a sentence do not depend on how long its
    batch is (h_i is 0 on padding). D = hidden_dim x directions. The final state of each layer,
    [h_fwd(last token); h_bwd(first token)] when bidirectional, goes through a Linear ``bridge``
    + tanh to the decoder's size (none when the sizes already match).

    A GRU runs the padded batch, one layer and direction at a time, with each sentence reversed
    within its length for the backward direction: padding then only follows the real tokens,
    where it cannot change their states, and each final state is the one at the last real token.
    That is the packed result in about 0.8x its time, because the backward pass of a packed
    ``nn.GRU`` zero-fills a (tokens, 3 x hidden) gradient at every time step. An LSTM's final
    cell state is not among its outputs, so an LSTM is packed. The weights are ``nn.GRU``'s
    (``rnn``), so checkpoints load either way.
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
        self._gru_shells: dict[int, nn.GRU] = {}  # not submodules: they hold no weights
        self.output_dim = hidden_dim * self.directions
        decoder_dim = decoder_dim or hidden_dim
        fits = self.output_dim == decoder_dim and not bidirectional
        self.bridge = None if fits else nn.Linear(self.output_dim, decoder_dim)

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, State]:
        """ids (B, S), mask (B, S) True on real tokens -> states (B, S, D), decoder start state."""
        inputs = self.dropout(self.embedding(ids))
        run = self._run_gru if isinstance(self.rnn, nn.GRU) else self._run_packed
        states, final = run(inputs, mask)
        return states, _map_state(final, self._to_decoder)

    def _run_packed(self, inputs: Tensor, mask: Tensor) -> tuple[Tensor, State]:
        """``rnn`` over the packed batch: the LSTM's way (see above)."""
        lengths = mask.sum(-1).clamp(min=1).cpu()
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        packed_states, final = self.rnn(packed)
        states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=mask.size(1))
        return states, final

    def _run_gru(self, inputs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``rnn`` over the padded batch, layer by layer, each direction on its own (see above)."""
        lengths = mask.sum(-1).clamp(min=1)
        reverse = _reversal_within(lengths, mask.size(1))  # (B, S), its own inverse
        last = (lengths - 1)[:, None, None]
        finals = []
        for layer in range(self.rnn.num_layers):
            if layer > 0:
                inputs = nn.functional.dropout(inputs, self.rnn.dropout, self.training)
            outputs = []
            for suffix in ["", "_reverse"][: self.directions]:
                backward = suffix == "_reverse"
                x = _gather_steps(inputs, reverse) if backward else inputs
                weights = {
                    f"{name}_l0": getattr(self.rnn, f"{name}_l{layer}{suffix}")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                }
                h, _ = functional_call(self._one_gru(x.size(-1)), weights, (x,))
                finals.append(h.gather(1, last.expand(-1, 1, h.size(-1))).squeeze(1))
                outputs.append(_gather_steps(h, reverse) if backward else h)
            inputs = torch.cat(outputs, dim=-1)
        return inputs * mask.unsqueeze(-1), torch.stack(finals)

    def _one_gru(self, input_dim: int) -> nn.GRU:
        """A weightless one-layer GRU that ``functional_call`` runs with one of ``rnn``'s layers."""
        if input_dim not in self._gru_shells:
            shell = nn.GRU(input_dim, self.rnn.hidden_size, batch_first=True, device="meta")
            self._gru_shells[input_dim] = shell
        return self._gru_shells[input_dim]

    def _to_decoder(self, final: Tensor) -> Tensor:
        """(layers x directions, B, H) -> (layers, B, decoder_dim): directions side by side."""
        layers, batch = self.rnn.num_layers, final.size(1)
        final = final.view(layers, self.directions, batch, -1).transpose(1, 2)
        final = final.reshape(layers, batch, self.output_dim)
        return final if self.bridge is None else torch.tanh(self.bridge(final))


def _reversal_within(lengths: Tensor, width: int) -> Tensor:
    """(B, S) step indices that reverse each row's first ``lengths`` steps and keep the rest."""
    steps = torch.arange(width, device=lengths.device)[None]
    flipped = lengths[:, None] - 1 - steps
    return torch.where(flipped >= 0, flipped, steps)


def _gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """x (B, S, F) with its steps taken in ``index`` (B, S) order."""
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


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
        return self.output(self._pre_logits(features))

    def loss(
        self, features: Tensor, labels: Tensor, label_smoothing: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """features (N, F), labels (N,) -> (mean cross-entropy, mean -log p(label)) through the
        vocabulary projection chunk by chunk (``linear_cross_entropy``), never the (N, V) logits."""
        return linear_cross_entropy(
            self._pre_logits(features),
            self.output.weight,
            labels,
            bias=self.output.bias,
            label_smoothing=label_smoothing,
        )

    def _pre_logits(self, features: Tensor) -> Tensor:
        return self.dropout(torch.tanh(self.pre_output(features)))
