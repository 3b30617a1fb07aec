"""What every task shares: optimizer and scheduler from config, metrics per stage, logging.

A task is a LightningModule around a plain ``torch.nn`` model (``net``). Subclasses write
``step(batch, stage)`` returning the loss and may override ``build_metrics``; the base keeps one
independent copy of the metrics per stage, logged as ``train/...``, ``val/...``, ``test/...``.
Losses are averaged over the epoch by metric objects too (``log_mean``), so a checkpoint taken
mid-epoch holds the epoch's running metrics and a resumed run reports what an unbroken one would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, MetricCollection

from attnlab.data.interface import DataInterface

STAGES = ("train", "val", "test")
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


class BaseTask(L.LightningModule):
    loss_names: tuple[str, ...] = ("loss",)  # what ``log_mean`` averages over each epoch

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/loss",
        compile: bool | Mapping[str, Any] = False,
        no_decay_norm_and_bias: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.monitor = monitor
        self.compile_net = compile
        self.net_compiled = False
        self.no_decay_norm_and_bias = no_decay_norm_and_bias
        metrics = self.build_metrics()
        self.metrics = nn.ModuleDict(  # ModuleDict keys may not shadow attributes like .train
            {f"{s}_metrics": metrics.clone(prefix=f"{s}/") for s in STAGES} if metrics else {}
        )
        self.means = nn.ModuleDict(  # plain MeanMetrics: a MetricCollection could merge equal ones
            {f"{s}_{name}": MeanMetric() for s in STAGES for name in self.loss_names}
        )
        self.run_config: dict | None = None  # the resolved config, saved in checkpoints
        # What the task, its callbacks and tools need of the data (tokenizers, class names, fixed
        # examples): handed over by the pipeline, which builds the DataModule beside the task.
        self.data: DataInterface | None = None

    def build_metrics(self) -> MetricCollection | None:
        return None

    def setup(self, stage: str) -> None:
        """A task fitted by a plain Lightning ``Trainer`` (not the pipeline) takes the interface
        of the DataModule it was given."""
        datamodule = getattr(self._trainer, "datamodule", None)  # None: no Trainer attached
        if self.data is None and datamodule is not None:
            self.data = datamodule.interface

    def step(self, batch: Any, stage: str) -> Tensor:
        raise NotImplementedError

    def stage_metrics(self, stage: str) -> MetricCollection | None:
        """The metrics of ``stage`` (train/val/test), or None for tasks without metrics."""
        return self.metrics[f"{stage}_metrics"] if self.metrics else None

    def log_mean(self, stage: str, name: str, value: Tensor, batch_size: int) -> None:
        """Log ``stage/name``: each training step's value, and its mean over the epoch (weighted
        by batch size, averaged over DDP ranks)."""
        mean = self.means[f"{stage}_{name}"]
        mean(value.detach(), batch_size)  # forward: accumulates, and keeps this batch's value
        on_step = stage == "train"
        self.log(f"{stage}/{name}", mean, on_step=on_step, on_epoch=True, prog_bar=name == "loss")

    def log_metrics(self, stage: str, loss: Tensor, batch_size: int) -> None:
        """Loss (step and epoch in training, epoch otherwise) and the stage's metric objects."""
        self.log_mean(stage, "loss", loss, batch_size)
        metrics = self.stage_metrics(stage)
        if metrics is not None:
            self.log_dict(
                metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size
            )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_model(self) -> None:
        """``compile`` (true, or ``torch.compile`` arguments such as ``{mode: max-autotune}``):
        ``nn.Module.compile`` in place, so the state dict keeps its plain names (no
        ``_orig_mod.``) and checkpoints load into uncompiled models."""
        if self.compile_net and not self.net_compiled:  # fit then test: compile once
            options = self.compile_net if isinstance(self.compile_net, Mapping) else {}
            self.net.compile(**options)
            self.net_compiled = True

    def parameter_groups(self) -> list[dict[str, Any]]:
        """With ``no_decay_norm_and_bias``: biases and normalisation weights in a group with
        ``weight_decay=0`` (decaying them towards 0 only hurts), everything else as configured."""
        if not self.no_decay_norm_and_bias:
            return [{"params": list(self.parameters())}]
        decay, no_decay, seen = [], [], set()
        for module in self.modules():
            is_norm = isinstance(module, NORM_LAYERS)
            for name, param in module.named_parameters(recurse=False):
                if id(param) in seen:  # tied weights (the MLM decoder) belong to one group only
                    continue
                seen.add(id(param))
                (no_decay if is_norm or name == "bias" else decay).append(param)
        return [  # names: LearningRateMonitor logs lr-AdamW/decay and lr-AdamW/no_decay
            {"params": decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer, **self._run_length())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "monitor": self.monitor,
            },
        }

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Step the schedule, except past its last step: the run's length is estimated from the
        first epoch, and an epoch of fresh pairs or segments (``reload_dataloaders_every_n_epochs``)
        can be a few batches longer, where OneCycleLR would raise. The lr stays at its end."""
        total = getattr(scheduler, "total_steps", None)
        if total is not None and scheduler.last_epoch >= total - 1:
            return
        super().lr_scheduler_step(scheduler, metric)

    def _run_length(self) -> dict[str, int]:
        """``total_steps`` for a scheduler that takes it and was not given it (OneCycleLR,
        warm-up + cosine): the number of optimizer steps the trainer will take."""
        factory = self.scheduler_factory
        given = getattr(factory, "keywords", {})  # a functools.partial from ``_partial_: true``
        accepts = inspect.signature(getattr(factory, "func", factory)).parameters
        if "total_steps" not in accepts or given.get("total_steps") or given.get("epochs"):
            return {}
        steps = int(self.trainer.estimated_stepping_batches)
        if given.get("pct_start", 0) * steps == 1:  # OneCycleLR divides by pct_start*steps - 1
            return {"total_steps": steps, "pct_start": 2 / steps}  # a 2-step warm-up instead
        return {"total_steps": steps}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["attnlab_config"] = self.run_config
        checkpoint["train_epoch_metrics"] = metric_states(self._train_epoch_metrics())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint from mid-epoch: the epoch's training metrics continue from its state."""
        if "train_epoch_metrics" in checkpoint:
            self._train_epoch_metrics().load_state_dict(checkpoint["train_epoch_metrics"])

    def _train_epoch_metrics(self) -> nn.ModuleDict:
        train_means = {k: m for k, m in self.means.items() if k.startswith("train_")}
        metrics = self.stage_metrics("train")
        return nn.ModuleDict({**train_means, **({"metrics": metrics} if metrics else {})})


def metric_states(module: nn.Module) -> dict[str, Any]:
    """The states of the torchmetrics metrics in ``module``, which its state dict leaves out."""
    metrics = [m for m in module.modules() if isinstance(m, Metric)]
    for metric in metrics:
        metric.persistent(True)
    try:
        return module.state_dict()
    finally:
        for metric in metrics:
            metric.persistent(False)
