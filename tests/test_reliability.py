"""Faults a run survives or names: a NaN loss, pre-emption signals, a crash mid-checkpoint."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import CompletedProcess

import lightning as L
import pytest
import torch
import wandb
from conftest import REPO_ROOT, run_command
from test_e2e import SHORT

from attnlab import pipeline
from attnlab.callbacks.fault_tolerance import NonFiniteLossError, NonFiniteLossGuard
from attnlab.errors import ConfigError, user_error_message
from attnlab.tasks.base import BaseTask
from attnlab.utils.checkpoint_io import AtomicCheckpointIO

BASE = ["experiment=tweet_attention", *SHORT]  # 5 train batches per epoch
TWEETS = [*BASE, "logger=none"]


@pytest.fixture
def nan_at_steps(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Steps (global_step values) whose training loss becomes NaN; fill the returned set."""
    steps: set[int] = set()
    original = BaseTask.training_step

    def training_step(self: BaseTask, batch: object, batch_idx: int) -> torch.Tensor:
        loss = original(self, batch, batch_idx)
        return loss * math.nan if self.global_step in steps else loss

    monkeypatch.setattr(BaseTask, "training_step", training_step)
    return steps


class _WeightWatch(L.Callback):
    """Whether the weights changed over each training batch, and whether they stay finite."""

    def __init__(self) -> None:
        self.changed: dict[int, bool] = {}
        self._before: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        after = list(pl_module.parameters())
        assert all(torch.isfinite(p).all() for p in after), "non-finite weights"
        pairs = zip(after, self._before, strict=True)
        self.changed[trainer.global_step - 1] = any(not torch.equal(a, b) for a, b in pairs)


def _with_callback(trainer_spy, callback: L.Callback) -> None:
    make = trainer_spy._make

    def with_it(cfg):
        trainer, loggers = make(cfg)
        trainer.callbacks.append(callback)
        return trainer, loggers

    trainer_spy._make = with_it


def test_a_nan_loss_stops_the_run_naming_step_and_last_checkpoint(
    compose, trainer_spy, nan_at_steps: set[int], tmp_path: Path
) -> None:
    nan_at_steps.add(7)  # epoch 1, batch 2: after epoch 0's checkpoints
    watch = _WeightWatch()
    _with_callback(trainer_spy, watch)
    with pytest.raises(NonFiniteLossError) as error:
        pipeline.train(compose([*TWEETS, "trainer.max_epochs=3"]))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    message = str(error.value)
    assert "training loss is NaN (nan) at step 7 (epoch 1, batch 2)" in message
    assert f"the last good checkpoint is {last} (resume with ckpt_path={last})" in message
    assert "task.optimizer.lr" in message and "trainer.gradient_clip_val" in message
    assert trainer_spy.trainer.global_step == 7  # the bad step never happened
    assert torch.load(last, weights_only=False)["global_step"] == 5


def test_skip_leaves_the_weights_of_a_nan_batch_untouched(
    compose, trainer_spy, nan_at_steps: set[int]
) -> None:
    nan_at_steps.update({2, 3})
    watch = _WeightWatch()
    _with_callback(trainer_spy, watch)
    cfg = compose([*TWEETS, "trainer.max_epochs=1", "callbacks.non_finite_loss.action=skip"])
    pipeline.train(cfg)
    assert trainer_spy.trainer.global_step == 5
    assert watch.changed == {0: True, 1: True, 2: False, 3: False, 4: True}


def test_skip_stops_after_max_skips_in_a_row(compose, nan_at_steps: set[int]) -> None:
    nan_at_steps.update(range(1, 5))
    cfg = compose(
        [
            *TWEETS,
            "trainer.max_epochs=1",
            "callbacks.non_finite_loss.action=skip",
            "callbacks.non_finite_loss.max_skips=2",
        ]
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 3 .* after 2 skipped steps in a row"):
        pipeline.train(cfg)


def test_a_diverged_sweep_trial_scores_worst_instead_of_crashing(
    compose, nan_at_steps: set[int]
) -> None:
    """In a multirun job the NaN stop becomes the worst value (val/f1 is maximised: -inf)."""
    nan_at_steps.add(1)
    cfg = compose([*TWEETS, "trainer.max_epochs=1", "hydra.mode=MULTIRUN"])
    assert pipeline.train(cfg) == -math.inf


def test_a_bad_non_finite_action_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"action='halt': use one of \('stop', 'skip'\)"):
        NonFiniteLossGuard(action="halt")


def test_a_crash_while_writing_keeps_the_previous_checkpoint(
    compose, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trainer, _ = pipeline.make_trainer(compose([*TWEETS]))
    io = trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)  # wired by conf/trainer/default.yaml
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)

    def crash_midway(obj, f, *args, **kwargs) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    kept = torch.load(path, weights_only=False)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.ones(1000))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"{path} not written in {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_saves_last_ckpt_and_ckpt_path_last_resumes_it(
    signum: signal.Signals, compose, trainer_spy, cache_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "outputs" / "tweet_attention" / "runs" / "killed"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            *BASE,
            "logger=csv",
            "trainer.max_epochs=1000",
            f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Hydra's job logging prints to stdout
        text=True,
    )
    try:
        _wait_for(last, process, timeout=120)
        first_step = torch.load(last, weights_only=False)["global_step"]
        time.sleep(1.0)  # into the next epochs: the signal's checkpoint is a newer one
        signalled = time.time()
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    stopped = re.search(rf"{signal.Signals(signum).name} received: stopped at step (\d+)", output)
    assert stopped, output[-3000:]
    assert f"saved {last}; resume with ckpt_path=last" in output
    assert last.stat().st_mtime >= signalled
    saved = torch.load(last, weights_only=False)["global_step"]
    assert saved == int(stopped[1]) > first_step  # the signal's checkpoint, not an epoch's

    class StartStep(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            self.step = trainer.global_step

    start = StartStep()
    _with_callback(trainer_spy, start)
    pipeline.train(
        compose(
            [*TWEETS, "ckpt_path=last", "test=false"]
            + [f"trainer.max_steps={saved + 3}", "optimized_metric=null"],  # stops mid-epoch
            output_dir=tmp_path / "outputs" / "tweet_attention" / "runs" / "resumed",
        )
    )
    assert start.step == saved
    assert trainer_spy.trainer.global_step == saved + 3


@pytest.mark.parametrize("api_key", [None, "0" * 40], ids=["no_key", "server_unreachable"])
def test_wandb_online_but_unreachable_warns_once_and_logs_offline(
    api_key: str | None,
    compose,
    trainer_spy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: refused
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    if api_key:
        monkeypatch.setenv("WANDB_API_KEY", api_key)
    else:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose(
        [*BASE, "logger=wandb", "trainer.max_epochs=1", "logger.wandb.settings.init_timeout=2"]
    )
    wandb.teardown()  # wandb reads WANDB_MODE once per process: start as a fresh process does
    started = time.monotonic()
    pipeline.train(cfg)
    assert time.monotonic() - started < 30  # no prompt, no 90 s default wait
    warnings = [r.message for r in caplog.records if "W&B is not reachable online" in r.message]
    assert len(warnings) == 1, warnings
    assert ("no API key" if api_key is None else "CommError") in warnings[0]
    assert os.environ["WANDB_MODE"] == "offline"
    assert trainer_spy.trainer.global_step == 5
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*")), "no offline W&B run"


def _tweets_csv(rows: str, header: str = "text,rating") -> bytes:
    """A tweets csv: ``header`` then ``rows`` repeated (enough for train/val/test splits)."""
    return (header + "\n").encode() + rows.encode("latin-1") * 30


def _class_label_parquet(path: Path) -> None:
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = {"text": ["good", "bad", "unrated"] * 10, "label": [1, 0, -1] * 10}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))


def _one_class_image_folder(path: Path) -> None:
    from PIL import Image

    (path / "cats").mkdir(parents=True)
    for i in range(6):
        Image.new("L", (8, 8), i * 40).save(path / "cats" / f"{i}.png")


TWEETS_FROM = ["experiment=tweet_attention"]  # + data.source.files=<the case's file>
LM_FROM = ["experiment=lm_transformer", "data.sentences_column=null"]
IMAGES_FROM = ["experiment=vit", "data.source.embedded=null"]
HEADERLESS = r"seems to have no header row: its first row \[{}\] was read as the column names"
# (case, overrides, the input the run reads, the message's pattern). The input is None (the
# embedded data) or (suffix, bytes or a writer or None: not written, the key given its path).
BAD_INPUTS = [
    ("unknown group option", ["model=nope"], None, r"(?s)'model/nope'.*options.*attention_pool"),
    ("unknown logger", ["logger=nope"], None, r"(?s)'logger/nope'.*options in 'logger': csv, many"),
    ("override syntax", ["trainer.max_epochs=[1"], None, r"no viable alternative at input '\[1'"),
    ("negative lr", ["task.optimizer.lr=-0.1"], None, r"lr=-0.1 must be > 0; e.g. task.optim"),
    ("dropout 1.5", ["model.dropout=1.5"], None, r"model.dropout=1.5: .* in \[0, 1\); e.g."),
    (
        "num_heads not dividing d_model",
        ["experiment=lm_transformer", "model.num_heads=3"],
        None,
        r"d_model \(128\) must be divisible by num_heads \(3\).*pick e.g. num_heads in",
    ),
    (
        "max length above the position table",
        ["experiment=lm_transformer", "model.max_len=16"],
        None,
        r"data.block_size=128 is longer than .*model.max_len=16\): set model.max_len>=128",
    ),
    ("lr not a number", ["task.optimizer.lr=fast"], None, r"lr='fast' is not a number; e.g."),
    (
        "misspelt key of a class",
        ["++trainer.max_epoch=2"],
        None,
        r"trainer.max_epoch: lightning.pytorch.Trainer takes no 'max_epoch'; did you mean "
        r"trainer.max_epochs\? its settings are accelerator, ",
    ),
    (
        "wrong type for a class",
        ["data.batch_size=many"],
        None,
        r"data.batch_size='many': attnlab.data.tweets.TweetsDataModule wants int here, not str",
    ),
    ("misspelt top-level key", ["experiment=typo"], None, r"Key 'optimised_metric' not in 'Tr"),
    (
        "top-level value of the wrong type",
        ["seed=soon"],
        None,
        r"Value 'soon' of type 'str' could not be converted to Integer\s+full_key: seed",
    ),
    ("gpu without a GPU", ["trainer.accelerator=gpu"], None, r"no CUDA GPU: use trainer=cpu"),
    (
        "more devices than the machine has",
        ["trainer.devices=100000"],
        None,
        r"trainer.devices=100000 but this machine has \d+ CPU cores?: set trainer.devices<=",
    ),
    ("ckpt_path=last, no earlier run", ["ckpt_path=last"], None, r"no last.ckpt under .*train"),
    (
        "truncated checkpoint",
        [],
        (".ckpt", b"PK\x03\x04 not a whole checkpoint", "ckpt_path"),
        r"checkpoint '.*data.ckpt' cannot be read .*truncated or corrupted. Resume from another",
    ),
    (
        "output folder that cannot be written",
        [],
        (".txt", b"a file, not a folder", "paths.output_root"),
        r"cannot use '.*data.txt/.*': Not a directory. .*point it at a folder you can write",
    ),
    ("missing data file", TWEETS_FROM, (".csv", None), r"data file not found: .*check the path"),
    (
        "missing column",
        TWEETS_FROM,
        (".csv", _tweets_csv("so good,2.5\n", header="tweet,rating")),
        r"column 'text' \(data.text_column\) not found.*\['tweet', 'rating'\]: set data.text_",
    ),
    (
        "csv without a header row",
        TWEETS_FROM,
        (".csv", _tweets_csv("so good,2.5\n", header="this is great,1.5")),
        HEADERLESS.format(r"'this is great', '1.5'") + r".*\(text, rating, in the file's order\)",
    ),
    ("empty dataset", TWEETS_FROM, (".csv", b"text,rating\n"), r"empty.*Add examples to it"),
    (
        "non-UTF-8 csv",
        TWEETS_FROM,
        (".csv", _tweets_csv("caf\xe9 au lait,2.5\n")),
        r"is not UTF-8 text \(.*byte 0xe9 .*re-save it as UTF-8",
    ),
    (
        "ratings that are not numbers",
        TWEETS_FROM,
        (".csv", _tweets_csv("so good,high\n")),
        r"column 'rating' \(data.rating_column\) .* holds text values \(e.g. 'high'\), not numb",
    ),
    (
        "labels outside the class set",
        [*TWEETS_FROM, "data.rating_column=null", "data.label_column=label"],
        (".parquet", _class_label_parquet),
        r"labels \[-1\] in the '\w+' split .*outside the class set \['neg', 'pos'\].*drop",
    ),
    (
        "parallel tsv line missing its target",
        ["experiment=translation_attention"],
        (".tsv", b"en\tfr\nin the beginning\tau commencement\nand god said\n"),
        r"line 3 of '.*' has 1 tab-separated fields, expected 2 \(en <TAB> fr\)",
    ),
    (
        "parallel tsv without a header row",
        ["experiment=translation_attention"],
        (".tsv", b"in the beginning\tau commencement\n" * 40),
        HEADERLESS.format("'in the beginning', 'au commencement'") + r".*or name the file .txt",
    ),
    (
        "corpus with fewer rows than the splits",
        LM_FROM,
        (".txt", b"one line only.\n"),
        r"the train data has 1 rows, too few to carve a test split \(data.test_fraction=0.1\)",
    ),
    (
        "corpus shorter than one block",
        LM_FROM,
        (".txt", b"".join(b"line %d is here.\n" % i for i in range(40))),
        r"split has \d+ tokens, not enough for one block of 128: lower data.block_size",
    ),
    (
        "image folder of a single class",
        IMAGES_FROM,
        ("", _one_class_image_folder, "data.source.folder"),
        r"image folder '.*' has a single class \(\['cats'\]\): a classifier needs at least two",
    ),
]
# The cases run again through the real command line (each a fresh process, two at a time).
ON_THE_COMMAND_LINE = [
    "unknown group option",
    "unknown logger",
    "override syntax",
    "misspelt top-level key",
    "top-level value of the wrong type",
    "gpu without a GPU",
    "ckpt_path=last, no earlier run",
    "truncated checkpoint",
    "output folder that cannot be written",
    "missing data file",
    "csv without a header row",
    "ratings that are not numbers",
    "parallel tsv without a header row",
]


def _prepare(root: Path, overrides: list[str], source) -> list[str]:
    """The case's overrides, its input written under ``root``, a user experiment folder."""
    experiments = root / "conf" / "experiment"  # a user's own, found through hydra.searchpath
    experiments.mkdir(parents=True, exist_ok=True)
    (experiments / "typo.yaml").write_text("# @package _global_\noptimised_metric: val/acc\n")
    if source is None:
        return list(overrides)
    suffix, content, key = (*source, "data.source.files")[:3]
    path = root / f"data{suffix}"
    if callable(content):
        content(path)
    elif content is not None:
        path.write_bytes(content)
    return [*overrides, f"{key}={path}"]


# Hydra makes the run folder before attnlab's code runs: only the command line meets this one.
COMMAND_LINE_ONLY = {"output folder that cannot be written"}
IN_PROCESS = [case for case in BAD_INPUTS if case[0] not in COMMAND_LINE_ONLY]


@pytest.mark.parametrize(
    ("overrides", "source", "message"),
    [case[1:] for case in IN_PROCESS],
    ids=[case[0] for case in IN_PROCESS],
)
def test_a_bad_input_is_an_error_naming_the_problem_and_the_fix(
    compose, tmp_path: Path, overrides: list[str], source, message: str
) -> None:
    """Through ``pipeline.train``; the message is what the command line prints."""
    overrides = _prepare(tmp_path, overrides, source)
    overrides += [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "debug=fdr"]  # fdr: 1 batch
    with pytest.raises(Exception) as error:
        pipeline.train(compose(overrides))
    shown = user_error_message(error.value)
    assert shown is not None, f"not reported as the user's mistake: {error.value!r}"
    assert re.search(message, shown), shown


@pytest.fixture(scope="module")
def command_line_failures(tmp_path_factory, cache_dir: Path) -> dict[str, CompletedProcess]:
    """Each ``ON_THE_COMMAND_LINE`` case run as ``attnlab-train ...`` from an empty folder."""
    cases = {case[0]: case[1:] for case in BAD_INPUTS}

    def run(name: str) -> CompletedProcess:
        root = tmp_path_factory.mktemp("bad_input")
        overrides, source, _ = cases[name]
        args = ["--config-dir", str(root / "conf"), *_prepare(root, overrides, source)]
        args += [f"paths.root_dir={root}", f"paths.cache_dir={cache_dir}", "debug=fdr"]
        (root / "cwd").mkdir()
        return run_command(["attnlab-train", *args], cwd=root / "cwd")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(ON_THE_COMMAND_LINE, pool.map(run, ON_THE_COMMAND_LINE), strict=True))


@pytest.mark.parametrize("name", ON_THE_COMMAND_LINE)
def test_a_bad_input_on_the_command_line_is_one_short_message(
    command_line_failures: dict[str, CompletedProcess], name: str
) -> None:
    """Exit status 2, no traceback, a few lines, and the message naming the key or file."""
    result = command_line_failures[name]
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) <= 15, output
    (error_line,) = [line for line in result.stderr.splitlines() if "attnlab: error:" in line]
    message = {case[0]: case[3] for case in BAD_INPUTS}[name]
    shown = result.stderr[result.stderr.index("attnlab: error:") :]
    assert error_line.startswith("attnlab: error: ") and re.search(message, shown), shown


def test_hydra_full_error_shows_the_whole_traceback(cache_dir: Path, tmp_path: Path) -> None:
    result = run_command(
        ["attnlab-train", f"paths.root_dir={tmp_path}", "ckpt_path=last", "debug=fdr"],
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr[-3000:]
    assert "ConfigError: ckpt_path=last: no last.ckpt under" in result.stderr


def test_a_run_ending_before_its_first_validation_warns_and_returns_no_score(
    compose, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """``trainer.max_steps=2`` stops inside the first epoch: no val/f1 to return to a sweeper."""
    cfg = compose(["experiment=tweet_attention", "trainer.max_steps=2", "logger=none"])
    assert pipeline.train(cfg) is None
    assert "optimized_metric='val/f1' was not logged" in caplog.text
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # the work is kept


def test_a_checkpoint_every_n_steps_resumes_mid_epoch(compose, trainer_spy, tmp_path) -> None:
    """Mid-epoch resume: the step, epoch and batch position continue."""
    runs = tmp_path / "outputs" / "tweet_attention" / "runs"
    steps = [*TWEETS, "callbacks.model_checkpoint.every_n_train_steps=3", "test=false"]
    pipeline.train(compose([*steps, "trainer.max_epochs=2"], output_dir=runs / "first"))
    last = runs / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 9  # epoch 1, batch 3 of 5

    seen: list[tuple[int, int]] = []

    class Batches(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append((trainer.current_epoch, batch_idx))

    _with_callback(trainer_spy, Batches())
    cfg = compose([*steps, "trainer.max_epochs=3", "ckpt_path=last"], output_dir=runs / "again")
    pipeline.train(cfg)
    assert seen[:2] == [(1, 4), (2, 0)]  # the epoch's last batch, then the next epoch
    assert trainer_spy.trainer.global_step == 15


def _trained(trainer_spy) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    trainer = trainer_spy.trainer
    weights = {k: v.detach().clone() for k, v in trainer.lightning_module.state_dict().items()}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return weights, metrics


# (experiment, its picture callbacks switched off, DataLoader workers): random masks drawn in the
# main process or in workers (BERT), a custom length-bucketing batch sampler and teacher forcing
# (translation), random shifts and flips of the images (ViT).
KILLED_RUNS = [
    ("bert_mlm", ["callbacks.masked_predictions=null", "callbacks.attention_maps=null"], 0),
    ("bert_mlm", ["callbacks.masked_predictions=null", "callbacks.attention_maps=null"], 2),
    ("translation_attention", ["callbacks.alignment=null", "data.eval_batch_size=16"], 0),
    ("vit", ["callbacks.vit_pictures=null"], 0),
]


@pytest.mark.parametrize(
    ("experiment", "quiet", "workers"),
    KILLED_RUNS,
    ids=[f"{e}-{w}workers" for e, _, w in KILLED_RUNS],
)
def test_a_run_killed_mid_epoch_resumes_to_the_weights_and_metrics_of_an_uninterrupted_run(
    experiment: str,
    quiet: list[str],
    workers: int,
    compose,
    trainer_spy,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    """SIGKILL at step 8 of 10 (epoch 1, batch 3), resume from the step-6 checkpoint: the data
    order, the random draws of the data (in the main process or in workers) and of the model
    (dropout) all continue as if nothing happened, so the weights and metrics are exactly the
    uninterrupted run's."""
    overrides = [
        f"experiment={experiment}",
        *SHORT[:-1],  # 5 batches per epoch (token_attention is the tweet experiments' only)
        "logger=csv",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "callbacks.model_checkpoint.every_n_train_steps=3",
        *quiet,
        f"data.num_workers={workers}",
        "test=false",
    ]
    pipeline.train(compose(overrides, output_dir=tmp_path / "uninterrupted"))
    expected_weights, expected_metrics = _trained(trainer_spy)

    killed = tmp_path / "outputs" / experiment / "runs" / "killed"
    process = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            *overrides,
            "+callbacks.kill._target_=kill_switch.SigkillAtStep",
            "+callbacks.kill.step=8",
            f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            f"hydra.run.dir={killed}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests"), "HYDRA_FULL_ERROR": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -signal.SIGKILL, process.stdout[-3000:] + process.stderr[-3000:]
    last = killed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 6  # mid-epoch 1

    pipeline.train(compose([*overrides, "ckpt_path=last"], output_dir=tmp_path / "resumed"))
    weights, metrics = _trained(trainer_spy)
    assert trainer_spy.trainer.global_step == 10
    assert weights.keys() == expected_weights.keys()
    for name, value in weights.items():
        assert torch.equal(value, expected_weights[name]), name
    assert metrics == expected_metrics
