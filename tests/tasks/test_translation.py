"""TranslationTask: BLEU of a perfect hypothesis is 100 through the real decode/normalise path,
a tiny overfit run drives the teacher-forced loss to ~0 and translates its training sentences,
and attnlab-translate works on that checkpoint alone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from conftest import compose_run, read_metrics_csv

from attnlab import pipeline
from attnlab.data.parallel_corpus import ParallelCorpusDataModule
from attnlab.data.sources import EMBEDDED_DIR
from attnlab.data.tab_separated import read_tab_separated
from attnlab.data.translation_pairs import normal_form
from attnlab.models.seq2seq import Seq2Seq
from attnlab.tasks.translation import TranslationTask
from attnlab.tools import bleu_by_length
from attnlab.viz import clean_token

PAIRS = 16  # real verses of at most 12 English words: one batch
ROW = re.compile(r"^\s*[│|]\s*(\S+)\s*[│|]\s*(\S+)\s*[│|]\s*(\d+\.\d+)\s*[│|]")


@pytest.fixture(scope="module")
def verses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 short Bible verse pairs as a Tatoeba-style file (source<TAB>target)."""
    table = read_tab_separated(EMBEDDED_DIR / "bible_en_fr.tsv.gz")
    pairs = [(e, f) for e, f in zip(table["en"], table["fr"], strict=True) if len(e.split()) <= 12]
    path = tmp_path_factory.mktemp("verses") / "verses.txt"
    path.write_text("".join(f"{e}\t{f}\n" for e, f in pairs[:PAIRS]))
    return path


def _datamodule(verses: Path, tmp_path: Path) -> ParallelCorpusDataModule:
    """The 16 verses as train, validation and test split, in batches of 4."""
    return ParallelCorpusDataModule(
        {"files": {"train": verses, "validation": verses, "test": verses}},
        min_words=1,
        src_tokenizer={"min_frequency": 1},
        tgt_tokenizer={"min_frequency": 1},
        batch_size=4,
        cache_dir=str(tmp_path),
    )


def _task(datamodule: ParallelCorpusDataModule, **options: Any) -> TranslationTask:
    sizes = [datamodule.src_vocab_size, datamodule.tgt_vocab_size]
    net = Seq2Seq(*sizes, datamodule.bos_id, datamodule.eos_id, embed_dim=16, hidden_dim=16)
    return TranslationTask(net=net, optimizer=torch.optim.Adam, length_buckets=[8, 10], **options)


def test_bleu_of_perfect_hypotheses_is_100(verses: Path, tmp_path: Path) -> None:
    """Decoding the references themselves (the output ids are the target ids) gives BLEU 100,
    overall and in every length bucket: hypotheses and references share one normal form."""
    datamodule = _datamodule(verses, tmp_path)
    task = _task(datamodule)
    update_bleu = task.update_bleu

    def with_perfect_outputs(batch: dict, stage: str) -> None:
        task.decode = lambda src_ids, src_mask, decoding=None: (batch["tgt_ids"][:, 1:], None)
        update_bleu(batch, stage)

    task.update_bleu = with_perfect_outputs
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.test(task, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics["test/bleu"] == pytest.approx(100.0)
    buckets = {k: v for k, v in metrics.items() if k.startswith("test/bleu_len_")}
    assert set(buckets) <= {"test/bleu_len_1-8", "test/bleu_len_9-10", "test/bleu_len_11+"}
    assert len(buckets) >= 2 and all(v == pytest.approx(100.0) for v in buckets.values())
    assert (tmp_path / "bleu_by_length.png").stat().st_size > 0


def test_validation_and_test_decode_as_configured(verses: Path, tmp_path: Path) -> None:
    """decoding=beam with val_decoding=greedy: validation decodes greedily (cheap, every epoch),
    the test by beam search."""
    datamodule = _datamodule(verses, tmp_path)
    task = _task(datamodule, decoding="beam", val_decoding="greedy")
    used = []
    for name in ("greedy_decode", "beam_search"):
        method = getattr(task.net, name)

        def recorded(*args: Any, _name: str = name, _method: Any = method) -> Any:
            used.append(_name)
            return _method(*args)

        setattr(task.net, name, recorded)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.validate(task, datamodule=datamodule)
    assert set(used) == {"greedy_decode"}
    used.clear()
    trainer.test(task, datamodule=datamodule)
    assert set(used) == {"beam_search"}


def test_bucket_names_cover_every_length() -> None:
    task = TranslationTask(net=Seq2Seq(50, 50, 2, 3), optimizer=None, length_buckets=[20, 10, 30])
    assert task.bucket_names() == ["1-10", "11-20", "21-30", "31+"]
    assert [task.bucket_of(n) for n in (1, 10, 11, 30, 31, 99)] == [0, 0, 1, 2, 3, 3]


def test_bad_decoding_settings_fail_clearly() -> None:
    with pytest.raises(ValueError, match="task.decoding='sample' is unknown"):
        TranslationTask(net=Seq2Seq(50, 50, 2, 3), optimizer=None, decoding="sample")
    with pytest.raises(ValueError, match="task.val_decoding='top_k' is unknown"):
        TranslationTask(net=Seq2Seq(50, 50, 2, 3), optimizer=None, val_decoding="top_k")
    with pytest.raises(ValueError, match="task.teacher_forcing=1.5 must be in"):
        TranslationTask(net=Seq2Seq(50, 50, 2, 3), optimizer=None, teacher_forcing=1.5)
    task = TranslationTask(net=Seq2Seq(50, 50, 2, 3), optimizer=None)
    with pytest.raises(ValueError, match=r"translate\(\) needs the DataModule"):
        task.translate(["hello"])


@pytest.fixture(scope="module")
def overfit_run(verses: Path, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):
    """experiment=translation_attention on the 16 verses (train = validation = test), a small
    model and a high learning rate, for 150 one-batch epochs."""
    root = tmp_path_factory.mktemp("overfit")
    files = f"{{train:{verses},validation:{verses},test:{verses}}}"
    cfg = compose_run(
        [
            "experiment=translation_attention",
            "task.decoding=greedy",  # the memorised verses, token by token
            "logger=csv",
            "trainer=cpu",
            f"data.source.files={files}",
            "data.source.embedded=null",
            "data.min_words=1",
            "data.src_tokenizer.min_frequency=1",
            "data.tgt_tokenizer.min_frequency=1",
            f"data.batch_size={PAIRS}",
            "model.embed_dim=64",
            "model.hidden_dim=64",
            "model.attention_dim=32",
            "model.key_dim=32",
            "model.dropout=0.0",
            "task.optimizer.lr=0.01",
            "trainer.max_epochs=150",
            "trainer.check_val_every_n_epoch=50",
            "trainer.log_every_n_steps=1",
            "callbacks.alignment.every_n_epochs=1",
            "callbacks.rich_progress_bar=null",
            "++trainer.enable_progress_bar=false",
        ],
        root,
        cache_dir,
    )
    pipeline.train(cfg)
    return root / "run"


def test_tiny_overfit_run_drives_the_loss_to_zero(overfit_run: Path) -> None:
    rows = read_metrics_csv(overfit_run / "csv" / "version_0" / "metrics.csv")
    train_loss = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert train_loss[0] > 4.0  # ~log(vocabulary) at the start
    assert train_loss[-1] < 0.05, train_loss[-10:]
    test = [r for r in rows if r.get("test/bleu")][-1]
    assert float(test["test/loss"]) < 0.05
    assert float(test["test/bleu"]) > 90  # it translates what it memorised
    assert (overfit_run / "bleu_by_length.png").stat().st_size > 0
    heatmaps = sorted((overfit_run / "alignments").glob("epoch*.png"))
    assert [p.name for p in heatmaps] == ["epoch049.png", "epoch099.png", "epoch149.png"]


def test_translate_script_on_the_tiny_checkpoint(
    overfit_run: Path, verses: Path, run_cli, tmp_path: Path
) -> None:
    checkpoint = overfit_run / "checkpoints" / "last.ckpt"
    source, target = verses.read_text().splitlines()[0].split("\t")
    png = tmp_path / "alignment.png"
    result = run_cli(
        ["attnlab-translate", f"ckpt_path={checkpoint}", f"text={source}", f"png={png}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, datamodule, task = pipeline.load_checkpoint(checkpoint)
    (expected,) = task.translate([source])
    assert expected["translation"] == normal_form(datamodule.tgt_tokenizer, target)  # memorised
    lines = result.stdout.splitlines()
    assert f"translation: {expected['translation']}" in lines
    rows = [ROW.match(line) for line in lines]
    rows = [(m.group(1), m.group(2), float(m.group(3))) for m in rows if m]
    assert [token for token, _, _ in rows] == [clean_token(t) for t in expected["target_tokens"]]
    sources = [clean_token(t) for t in expected["source_tokens"]]
    for (_, best, weight), alignment in zip(rows, expected["alignment"], strict=True):
        assert best == sources[int(alignment.argmax())]
        assert weight == pytest.approx(float(alignment.max()), abs=0.006)
    assert png.stat().st_size > 0


def test_bleu_by_length_script_tabulates_the_run(overfit_run: Path, tmp_path: Path) -> None:
    rows = read_metrics_csv(overfit_run / "csv" / "version_0" / "metrics.csv")
    test = [r for r in rows if r.get("test/bleu")][-1]
    table = bleu_by_length.main([str(overfit_run), f"out={tmp_path / 'b.png'}"])
    row = table.splitlines()[-1]
    assert row.startswith(f"| translation_attention | {float(test['test/bleu']):.1f} |"), table
    assert (tmp_path / "b.png").stat().st_size > 0


def _quiet_run(compose: Any, run: Path, *overrides: str) -> list[dict[str, str]]:
    """Train a composed experiment into ``run`` with CSV logs and no progress bars: its metric
    rows."""
    quiet = [
        "logger=csv",
        "callbacks.rich_progress_bar=null",
        "++trainer.enable_progress_bar=false",
    ]
    pipeline.train(compose([*overrides, *quiet], output_dir=run))
    return read_metrics_csv(run / "csv" / "version_0" / "metrics.csv")


@pytest.mark.slow
def test_attention_beats_no_attention_at_equal_epochs(compose, tmp_path: Path) -> None:
    """The issue's comparison, shortened: both experiments for three epochs on the embedded
    Bible (about 7 CPU-minutes together). Attention must be clearly ahead, and the model without
    attention must lose a larger share of its BLEU from short to long sentences, where its
    single fixed-size state has the most to carry."""
    scores = {}
    for experiment in ("translation_attention", "translation_rnn"):
        run = tmp_path / experiment
        short = ["trainer.max_epochs=3", "trainer.max_time=null", "callbacks.alignment=null"]
        rows = _quiet_run(compose, run, f"experiment={experiment}", *short)
        scores[experiment] = {k: float(v) for k, v in rows[-1].items() if k.startswith("test/bleu")}
    attention, plain = scores["translation_attention"], scores["translation_rnn"]
    assert attention["test/bleu"] > plain["test/bleu"] + 5, scores

    def kept(bleu: dict[str, float]) -> float:  # share of the short-sentence BLEU kept on long
        return bleu["test/bleu_len_21-30"] / bleu["test/bleu_len_1-10"]

    assert kept(plain) < kept(attention), scores


@pytest.mark.slow
def test_attention_reaches_20_bleu_in_its_budget(compose, tmp_path: Path) -> None:
    """The issue's target: the default experiment, whose training stops at 9 minutes
    (``trainer.max_time``), tests at 20 BLEU or more by beam search (README: 20.68 +- 0.26 over 3
    seeds, one core each, 581 s for a whole run)."""
    rows = _quiet_run(compose, tmp_path, "experiment=translation_attention")
    assert float(rows[-1]["test/bleu"]) >= 20.0, rows[-1]
