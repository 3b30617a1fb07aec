"""The model families of ``attnlab-bench`` beyond BERT, each against its peer, same weights.

- ``TransformerLM`` (pre-norm, learned positions, tied embeddings, GELU) against Hugging Face's
  ``GPT2LMHeadModel`` of the same shape, with ``attn_implementation`` sdpa and eager. Ours
  scales the token embeddings by sqrt(d_model) (Vaswani et al.); GPT-2 does not, so the peer is
  given the same scaled embeddings as ``inputs_embeds``: the same function, the peer's code.
- ``VisionTransformer`` against ``ViTForImageClassification``, ours loaded with its weights.
- ``Seq2Seq`` (bidirectional GRU encoder, additive attention) against the same model written the
  textbook way (the PyTorch translation tutorial's loop; no library ships one): every step looks
  up its token embedding, scores every encoder state through the full additive score (W_k k_i
  at every step), and computes its own logits and loss. Same parameters (a copy of ours), so the
  same losses.
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.callbacks.throughput import model_flops_per_token
from attnlab.data.collate import IGNORE_INDEX
from attnlab.hf.vit import load_hf_vit_state_dict
from attnlab.models.lm import TransformerLM
from attnlab.models.seq2seq import Seq2Seq
from attnlab.models.vit import VisionTransformer
from attnlab.tools.bench_race import NUM_BATCHES, Contenders

HF_IMPLS = ("sdpa", "eager")
PAD = 0  # padding id of the seq2seq batches


# The Transformer LM against GPT-2.
def gpt2_state_dict(model: TransformerLM) -> dict[str, Tensor]:
    """Our pre-norm LM's weights under GPT-2's names (its Conv1D layers store W transposed)."""
    ours = model.state_dict()
    out = {
        "transformer.wte.weight": ours["token_embeddings.weight"],
        "transformer.wpe.weight": ours["positional.position_embeddings.weight"],
        "transformer.ln_f.weight": ours["encoder.final_norm.weight"],
        "transformer.ln_f.bias": ours["encoder.final_norm.bias"],
        "lm_head.weight": ours["lm_head.weight"],
    }
    for i in range(len(model.encoder.layers)):
        mine, theirs = f"encoder.layers.{i}.", f"transformer.h.{i}."
        for kind in ("weight", "bias"):
            out[f"{theirs}ln_1.{kind}"] = ours[f"{mine}attention_norm.{kind}"]
            out[f"{theirs}ln_2.{kind}"] = ours[f"{mine}feed_forward_norm.{kind}"]
        qkv = [ours[f"{mine}attention.{n}.weight"] for n in ("query", "key", "value")]
        out[f"{theirs}attn.c_attn.weight"] = torch.cat(qkv).T
        qkv = [ours[f"{mine}attention.{n}.bias"] for n in ("query", "key", "value")]
        out[f"{theirs}attn.c_attn.bias"] = torch.cat(qkv)
        linears = {
            "attn.c_proj": "attention.output",
            "mlp.c_fc": "feed_forward.intermediate",
            "mlp.c_proj": "feed_forward.output",
        }
        for hf, name in linears.items():
            out[f"{theirs}{hf}.weight"] = ours[f"{mine}{name}.weight"].T
            out[f"{theirs}{hf}.bias"] = ours[f"{mine}{name}.bias"]
    return {name: tensor.contiguous().clone() for name, tensor in out.items()}


def ours_lm_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """As ``LanguageModelTask``: the loader gives each block its next tokens as labels, and
    the model computes the loss through its vocabulary projection chunk by chunk."""
    return model(batch["input_ids"], labels=batch["labels"], ignore_index=IGNORE_INDEX)


def gpt2_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """GPT-2 shifts the labels itself (they are the inputs)."""
    embeds = model.transformer.wte(batch["input_ids"]) * math.sqrt(model.config.n_embd)
    return model(inputs_embeds=embeds, labels=batch["input_ids"]).loss


def lm_batch(ids: Tensor) -> dict[str, Tensor]:
    """Block ids and their next tokens; the last position has none (ignored), as in GPT-2."""
    return {"input_ids": ids, "labels": F.pad(ids[:, 1:], (0, 1), value=IGNORE_INDEX)}


def lm_race(args: argparse.Namespace, vocab: int, device: torch.device) -> tuple:
    """(contenders, batches, tokens a batch, training FLOPs a token)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    ours = TransformerLM(
        vocab,
        args.hidden,
        args.heads,
        args.layers,
        args.intermediate,
        max_len=args.seq_len,
        dropout=0.0,
        positional="learned",
        activation="gelu",
    )
    weights = gpt2_state_dict(ours)
    contenders: Contenders = {"ours": (ours, ours_lm_loss)}
    for impl in HF_IMPLS:
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=args.seq_len,
            n_embd=args.hidden,
            n_layer=args.layers,
            n_head=args.heads,
            n_inner=args.intermediate,
            activation_function="gelu",  # exact GELU, as ours (GPT-2's own is the tanh form)
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=1e-5,
            bos_token_id=None,
            eos_token_id=None,
            attn_implementation=impl,
        )
        hf = GPT2LMHeadModel(config)
        hf.load_state_dict(weights, strict=True)
        contenders[f"hf_{impl}"] = (hf, gpt2_loss)
    generator = torch.Generator().manual_seed(0)
    batches = [
        lm_batch(torch.randint(vocab, (args.batch, args.seq_len), generator=generator).to(device))
        for _ in range(NUM_BATCHES)
    ]
    flops = model_flops_per_token(ours, args.seq_len)
    return _to(contenders, device), batches, args.batch * args.seq_len, flops


# The ViT against Hugging Face's.
def ours_vit_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    images, labels = batch
    return F.cross_entropy(model(images).float(), labels)


def hf_vit_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    images, labels = batch
    return F.cross_entropy(model(pixel_values=images).logits.float(), labels)


def vit_race(args: argparse.Namespace, device: torch.device) -> tuple:
    """(contenders, batches, images a batch, None): ours from HF's initial weights."""
    from transformers import ViTConfig, ViTForImageClassification

    contenders: Contenders = {}
    for impl in HF_IMPLS:
        config = ViTConfig(
            image_size=args.image_size,
            patch_size=args.patch_size,
            num_channels=1,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.intermediate,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            num_labels=10,
            attn_implementation=impl,
        )
        torch.manual_seed(0)
        contenders[f"hf_{impl}"] = (ViTForImageClassification(config), hf_vit_loss)
    ours = VisionTransformer(
        10,
        args.image_size,
        args.patch_size,
        1,
        args.hidden,
        args.heads,
        args.layers,
        args.intermediate,
        dropout=0.0,
        layer_norm_eps=config.layer_norm_eps,
    )
    load_hf_vit_state_dict(ours, contenders["hf_sdpa"][0].state_dict())
    for impl in HF_IMPLS[1:]:
        contenders[f"hf_{impl}"][0].load_state_dict(contenders["hf_sdpa"][0].state_dict())
    generator = torch.Generator().manual_seed(0)
    size = (args.vit_batch, 1, args.image_size, args.image_size)
    batches = [
        (
            torch.randn(size, generator=generator).to(device),
            torch.randint(10, (args.vit_batch,), generator=generator).to(device),
        )
        for _ in range(NUM_BATCHES)
    ]
    return _to({"ours": (ours, ours_vit_loss), **contenders}, device), batches, args.vit_batch, None


# The RNN encoder-decoder against the textbook loop.
class TextbookSeq2Seq(nn.Module):
    """``Seq2Seq``'s math (one GRU layer, additive score) written step by step, as tutorials do:
    a packed bidirectional encoder, then one decoder step, score and loss at a time."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        decoder = model.decoder
        if len(decoder.cells) != 1 or not isinstance(decoder.cells[0], nn.GRUCell):
            raise ValueError("the textbook reference is written for one GRU layer")
        if model.encoder.directions != 2:
            raise ValueError("the textbook reference is written for a bidirectional encoder")
        self.model = copy.deepcopy(model)

    def forward(self, src_ids: Tensor, src_mask: Tensor, tgt_ids: Tensor) -> Tensor:
        """The mean cross-entropy over the real target tokens, one step at a time."""
        decoder = self.model.decoder
        score, cell = decoder.score, decoder.cells[0]
        memory, hidden = self._encode(src_ids, src_mask)
        keys = memory if decoder.key_proj is None else decoder.key_proj(memory)
        total = torch.zeros((), device=src_ids.device)
        for m in range(tgt_ids.size(1) - 1):
            y = decoder.embedding(tgt_ids[:, m])
            energy = torch.tanh(score.query_proj(hidden).unsqueeze(1) + score.key_proj(keys))
            scores = score.v(energy).squeeze(-1).masked_fill(~src_mask, float("-inf"))
            context = (scores.softmax(-1).unsqueeze(1) @ memory).squeeze(1)
            hidden = cell(torch.cat([y, context], -1), hidden)
            features = torch.tanh(decoder.pre_output(torch.cat([hidden, context, y], -1)))
            logits = decoder.output(features)
            target = tgt_ids[:, m + 1]
            total = total + F.cross_entropy(
                logits.float(), target, ignore_index=PAD, reduction="sum"
            )
        return total / (tgt_ids[:, 1:] != PAD).sum()

    def _encode(self, src_ids: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The packed bidirectional GRU: every state h_i, and s_0 from both final states."""
        encoder = self.model.encoder
        lengths = src_mask.sum(-1).cpu()
        packed = pack_padded_sequence(
            encoder.embedding(src_ids), lengths, batch_first=True, enforce_sorted=False
        )
        packed_states, final = encoder.rnn(packed)
        width = src_ids.size(1)
        memory, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=width)
        return memory, torch.tanh(encoder.bridge(torch.cat([final[0], final[1]], -1)))


def ours_seq2seq_loss(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    src_ids, src_mask, tgt_ids = batch
    loss, _ = model.loss(src_ids, src_mask, tgt_ids[:, :-1], tgt_ids[:, 1:])
    return loss


def textbook_loss(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    return model(*batch)


def _padded(lengths: Tensor, width: int, vocab: int, generator: torch.Generator) -> Tensor:
    ids = torch.randint(4, vocab, (len(lengths), width), generator=generator)
    return ids.masked_fill(torch.arange(width) >= lengths[:, None], PAD)


def seq2seq_race(args: argparse.Namespace, device: torch.device) -> tuple:
    """(contenders, batches, real target tokens a batch, None): translation_attention's model
    shape and batch size, sentences of 15-30 tokens padded to the batch's longest."""
    vocab, longest = args.seq2seq_vocab, 30
    torch.manual_seed(0)
    ours = Seq2Seq(
        vocab, vocab, bos_id=1, eos_id=2, embed_dim=256, hidden_dim=256, attention_dim=128,
        key_dim=128, dropout=0.0,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    batches, tokens = [], 0
    for _ in range(NUM_BATCHES):
        shape = (args.seq2seq_batch,)
        src_len = torch.randint(longest // 2, longest + 1, shape, generator=generator)
        tgt_len = torch.randint(longest // 2, longest + 1, shape, generator=generator)
        src_ids = _padded(src_len, longest, vocab, generator)
        tgt_ids = _padded(tgt_len, longest, vocab, generator)
        tokens += int((tgt_ids[:, 1:] != PAD).sum())
        batches.append(tuple(t.to(device) for t in (src_ids, src_ids != PAD, tgt_ids)))
    contenders: Contenders = {
        "ours": (ours, ours_seq2seq_loss),
        "textbook": (TextbookSeq2Seq(ours), textbook_loss),
    }
    return _to(contenders, device), batches, tokens // NUM_BATCHES, None


def _to(contenders: Contenders, device: torch.device) -> Contenders:
    return {name: (model.to(device).train(), fn) for name, (model, fn) in contenders.items()}
