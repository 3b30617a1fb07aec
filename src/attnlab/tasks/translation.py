"""Translation: token cross-entropy and perplexity per stage, corpus BLEU at validation and test.

BLEU (sacreBLEU through torchmetrics) is computed on decoded text: the model decodes every
validation and test sentence (greedy by default, beam search with ``decoding: beam``;
``val_decoding`` can keep validation greedy, so each epoch's BLEU stays cheap) and the
hypotheses are compared with the references in the target tokenizer's normal form (see
``attnlab.data.parallel_corpus``). The test also reports BLEU per source-length bucket (how well
the fixed-size state of a plain RNN copes with long sentences) and plots it as
``<run dir>/bleu_by_length.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.text import SacreBLEUScore

from attnlab.data.collate import texts_from_bytes
from attnlab.data.interface import PairInterface
from attnlab.tasks.base import BaseTask
from attnlab.tasks.metrics import Perplexity
from attnlab.utils.media import log_image
from attnlab.viz import plot_bars

DECODINGS = ("greedy", "beam")


class TranslationTask(BaseTask):
    """``net`` is a ``Seq2Seq``: teacher-forced logits for the loss, decoding for BLEU."""

    def __init__(
        self,
        teacher_forcing: float = 1.0,
        label_smoothing: float = 0.0,
        decoding: str = "greedy",
        val_decoding: str | None = None,
        beam_size: int = 5,
        length_penalty: float = 1.0,
        max_decode_len: int | None = None,
        length_buckets: Sequence[int] = (10, 20, 30),
        **base: Any,
    ) -> None:
        # a plain list, not Hydra's ListConfig: the saved hyperparameters must load weights_only
        length_buckets = sorted(int(edge) for edge in length_buckets)
        super().__init__(**base)
        for name, value in (("decoding", decoding), ("val_decoding", val_decoding or decoding)):
            if value not in DECODINGS:
                raise ValueError(f"task.{name}='{value}' is unknown; use one of {DECODINGS}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"task.teacher_forcing={teacher_forcing} must be in [0, 1]")
        self.teacher_forcing = teacher_forcing
        self.label_smoothing = label_smoothing
        self.decoding = decoding
        self.val_decoding = val_decoding or decoding
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.max_decode_len = max_decode_len
        self.length_buckets = length_buckets
        self.bleu = nn.ModuleDict({stage: SacreBLEUScore() for stage in ("val", "test")})
        self.bucket_bleu = nn.ModuleList(SacreBLEUScore() for _ in self.bucket_names())
        self.data: PairInterface | None = None  # the tokenizers

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"ppl": Perplexity()})

    def bucket_names(self) -> list[str]:
        """'1-10', '11-20', '21-30', '31+' for length_buckets (10, 20, 30): source words."""
        lows = [1, *(edge + 1 for edge in self.length_buckets)]
        names = [f"{low}-{high}" for low, high in zip(lows, self.length_buckets, strict=False)]
        return [*names, f"{lows[-1]}+"]

    def bucket_of(self, words: int) -> int:
        return sum(words > edge for edge in self.length_buckets)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) for ``tgt_ids[:, 1:]``, and the alignments."""
        return self.net(*self._teacher_forced(batch))

    def step(self, batch: dict[str, Any], stage: str) -> Tensor:
        src_ids, src_mask, tgt_ids, teacher_forcing = self._teacher_forced(batch)
        labels = batch["tgt_ids"][:, 1:]
        # the perplexity is of the model's distribution: nll is the unsmoothed loss
        loss, nll = self.net.loss(
            src_ids, src_mask, tgt_ids, labels, teacher_forcing, self.label_smoothing
        )
        self.stage_metrics(stage).update(nll.detach(), weight=(labels != self.net.tgt_pad_id).sum())
        self.log_metrics(stage, loss, batch_size=batch["src_ids"].size(0))
        if stage != "train":
            self.update_bleu(batch, stage)
        return loss

    def _teacher_forced(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, float]:
        """The net's arguments: the source, the decoder inputs and the teacher forcing (1 but in
        training)."""
        teacher_forcing = self.teacher_forcing if self.training else 1.0
        return batch["src_ids"], batch["src_mask"], batch["tgt_ids"][:, :-1], teacher_forcing

    def update_bleu(self, batch: dict[str, Any], stage: str) -> None:
        """Decode the batch; add hypothesis and reference to the stage's BLEU (and, at test, to
        the BLEU of each sentence's source-length bucket)."""
        decoding = self.val_decoding if stage == "val" else self.decoding
        ids, _ = self.decode(batch["src_ids"], batch["src_mask"], decoding)
        hypotheses = self.data.decode_targets(ids)
        references = [[r] for r in texts_from_bytes(batch["reference_text"])]
        self.bleu[stage].update(hypotheses, references)
        if stage == "test":
            sources = texts_from_bytes(batch["source_text"])
            for hypothesis, reference, source in zip(hypotheses, references, sources, strict=True):
                bucket = self.bucket_bleu[self.bucket_of(len(source.split()))]
                bucket.update([hypothesis], [reference])

    @torch.no_grad()
    def decode(
        self, src_ids: Tensor, src_mask: Tensor, decoding: str | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Output ids (B, T) and alignments (B, T, S) or None, by ``decoding`` (default: the
        configured ``decoding``)."""
        if (decoding or self.decoding) == "beam":
            return self.net.beam_search(
                src_ids, src_mask, self.beam_size, self.length_penalty, self.max_decode_len
            )
        return self.net.greedy_decode(src_ids, src_mask, self.max_decode_len)

    @staticmethod
    def _score(metric: SacreBLEUScore) -> float | None:
        """Corpus BLEU in 0-100 of what ``metric`` saw (None if nothing), then reset."""
        score = float(metric.compute()) * 100 if metric.preds_len.item() > 0 else None
        metric.reset()
        return score

    def on_validation_epoch_end(self) -> None:
        score = self._score(self.bleu["val"])
        if score is not None:
            self.log("val/bleu", score, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        """Corpus BLEU, and BLEU per source-length bucket: logged and plotted to
        ``<run dir>/bleu_by_length.png``."""
        score = self._score(self.bleu["test"])
        if score is not None:
            self.log("test/bleu", score, prog_bar=True)
        names, scores = [], []
        for name, metric in zip(self.bucket_names(), self.bucket_bleu, strict=True):
            score = self._score(metric)
            if score is not None:  # else no test sentence of that length
                self.log(f"test/bleu_len_{name}", score)
                names.append(name)
                scores.append(score)
        if not names:
            return
        path = Path(self.trainer.default_root_dir) / "bleu_by_length.png"
        plot_bars(
            names,
            {self.decoding: scores},
            path,
            "test BLEU by source length, "
            + ("with attention" if self.net.decoder.score is not None else "without attention"),
            "source words",
            "BLEU",
        )
        log_image(self.trainer, "test/bleu_by_length", path)

    @torch.no_grad()
    def translate(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Translate raw source sentences: per text, the translation, its source and target
        tokens and the alignment weights (T, S) (None without attention)."""
        data = self.data
        if data is None:
            raise ValueError(
                "translate() needs the DataModule's tokenizers (task.data): load the task with "
                "attnlab.load(checkpoint) or attnlab.pipeline.load_checkpoint(checkpoint)"
            )
        was_training = self.training
        self.eval()
        batch = data.encode_sources(list(texts))
        ids, alignments = self.decode(
            batch["src_ids"].to(self.device), batch["src_mask"].to(self.device)
        )
        self.train(was_training)
        translations = data.decode_targets(ids)
        results = []
        for row, text in enumerate(texts):
            source_tokens = data.source_tokens(text)
            target_tokens = data.target_tokens(ids[row].tolist())
            alignment = None
            if alignments is not None:  # the rows of the kept tokens, the columns of the real ones
                alignment = alignments[row, : len(target_tokens), : len(source_tokens)].cpu()
            results.append(
                {
                    "source": text,
                    "translation": translations[row],
                    "source_tokens": source_tokens,
                    "target_tokens": target_tokens,
                    "alignment": alignment,
                }
            )
        return results
