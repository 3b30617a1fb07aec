"""Every config on disk composes: each experiment, and train/eval with each group option.

Parametrized over the files found in ``conf/``, so a new experiment or option is covered the
moment it is added.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from attnlab import trainer_setup
from attnlab.resolvers import register_resolvers
from attnlab.utils.config import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
GROUPS = ("trainer", "logger", "callbacks", "debug", "optimizer", "scheduler")
GROUP_OPTIONS = [
    (group, p.stem) for group in GROUPS for p in sorted((CONF_DIR / group).glob("*.yaml"))
]


def test_config_groups_are_found() -> None:
    assert "tweet_attention" in EXPERIMENTS and "tweet_mean" in EXPERIMENTS
    for group in GROUPS:
        assert any(g == group for g, _ in GROUP_OPTIONS), f"no options found for {group}"


def _check_composed(cfg, config_name: str) -> None:
    for key in ("data", "model", "task", "trainer"):
        assert "_target_" in cfg[key], f"{key} has no _target_"
    assert cfg.paths.output_root and cfg.paths.cache_dir
    assert cfg.task_name and cfg.seed is not None
    if config_name == "eval":
        assert OmegaConf.is_missing(cfg, "ckpt_path")
    else:
        assert cfg.train is True and cfg.test is True


@pytest.mark.parametrize("config_name", ["train", "eval"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(compose, experiment: str, config_name: str) -> None:
    cfg = compose([f"experiment={experiment}"], config_name=config_name)
    _check_composed(cfg, config_name)
    own = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").get("task_name")
    if own is not None:  # an experiment that names its output folder gets it
        assert cfg.task_name == own
    assert HydraConfig.get().runtime.choices.experiment == experiment


@pytest.mark.parametrize("config_name", ["train", "eval"])
@pytest.mark.parametrize(
    ("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS]
)
def test_group_option_composes(
    compose, tmp_path: Path, config_name: str, group: str, option: str
) -> None:
    cfg = compose([f"{group}={option}"], config_name=config_name)
    _check_composed(cfg, config_name)
    if group in ("callbacks", "logger"):
        # the group's nodes must resolve and build (bad _target_ or interpolation fails here)
        register_resolvers()  # ${run_name:...} of the W&B logger
        node = OmegaConf.to_container(cfg[group], resolve=True) if cfg[group] else {}
        kind = Callback if group == "callbacks" else Logger
        built = trainer_setup.instantiate_all(OmegaConf.create(node), kind)
        targets = [n for n in node.values() if n and "_target_" in n]
        assert len(built) == len(targets), f"{group}={option}: built {built} from {targets}"
    assert HydraConfig.get().runtime.choices[group] == option
    # the trainer settings the option file writes are the ones composed (no later override)
    settings = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    trainer_settings = settings if group == "trainer" else settings.get("trainer") or {}
    composed = OmegaConf.to_container(cfg.trainer)  # unresolved, like the option file
    for key, value in trainer_settings.items():
        if key != "defaults":
            assert composed[key] == value, f"{group}={option}: trainer.{key}"
    if group == "trainer":
        assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
        assert cfg.trainer.default_root_dir == str(tmp_path / "run")


SCHEDULERS = sorted(p.stem for p in (CONF_DIR / "scheduler").glob("*.yaml"))


@pytest.mark.parametrize("option", SCHEDULERS)
def test_each_scheduler_option_builds_on_an_optimizer(compose, option: str) -> None:
    """``scheduler=NAME`` replaces the schedule and its interval together, whatever the task."""
    cfg = compose(["experiment=vit", f"scheduler={option}"])
    assert HydraConfig.get().runtime.choices.scheduler == option
    assert cfg.task.scheduler_interval in ("step", "epoch")
    if option == "none":
        assert cfg.task.scheduler is None
        return
    node = OmegaConf.to_container(cfg.task.scheduler, resolve=True)
    if "total_steps" in node:
        node["total_steps"] = 100  # what the task fills in from the trainer
    optimizer = instantiate(cfg.task.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    scheduler = instantiate(OmegaConf.create(node))(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)


@pytest.mark.parametrize(
    ("experiment", "scheduler"),
    [
        ("tweet_attention", "none"),
        ("vit", "onecycle"),
        ("bert_mlm", "linear_warmup"),
        ("lm_transformer", "cosine"),
        ("tweet_bert", "linear_warmup"),
    ],
)
def test_each_task_picks_its_schedule(compose, experiment: str, scheduler: str) -> None:
    cfg = compose([f"experiment={experiment}"])
    assert HydraConfig.get().runtime.choices.scheduler == scheduler
    assert cfg.task.optimizer._target_ == "torch.optim.AdamW"
    own = OmegaConf.load(CONF_DIR / "task" / f"{HydraConfig.get().runtime.choices.task}.yaml")
    assert cfg.task.optimizer.lr == (own.optimizer.lr if experiment != "tweet_bert" else 5.0e-5)


def test_fsdp_shards_per_encoder_layer(compose) -> None:
    """trainer=fsdp builds Lightning's FSDP strategy with one shard unit per encoder layer
    (it runs only on GPUs; here the strategy object and its wrap policy are checked)."""
    from lightning.pytorch.strategies import FSDPStrategy

    from attnlab.models.transformer import EncoderLayer

    cfg = compose(["experiment=bert_mlm", "trainer=fsdp"])
    register_resolvers()  # ${gpu_precision:}
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert policy._module_classes == {EncoderLayer}
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("precision", "native", "warned"),
    [("bf16-mixed", False, True), ("bf16-mixed", True, False), ("32-true", False, False)],
)
def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(
    compose,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    precision: str,
    native: bool,
    warned: bool,
) -> None:
    """An AVX2-only CPU emulates bf16 matmuls (8x slower for the ViT): the run says so and names
    32-true; a CPU with AVX512_BF16 or AMX, or an fp32 run, hears nothing."""
    monkeypatch.setattr(trainer_setup, "native_bf16", lambda device: native)
    cfg = compose(["trainer=cpu", f"trainer.precision={precision}", "logger=none"])
    with caplog.at_level("WARNING", logger=trainer_setup.__name__):
        trainer_setup.make_trainer(cfg)
    messages = [r.getMessage() for r in caplog.records if r.name == trainer_setup.__name__]
    if warned:
        assert len(messages) == 1 and messages[0].startswith(f"trainer.precision={precision} on ")
        assert "Use trainer.precision=32-true on this machine" in messages[0]
    else:
        assert messages == []


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_gpu_trainers_fall_back_to_fp16_with_loss_scaling_without_bf16(
    compose, monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str
) -> None:
    """A V100 or T4 has no bf16: trainer=gpu/ddp/fsdp then train in 16-mixed (Lightning scales
    the loss); Ampere and newer keep bf16-mixed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    register_resolvers()
    for trainer in ("gpu", "ddp", "fsdp"):
        assert compose([f"trainer={trainer}"]).trainer.precision == expected, trainer
