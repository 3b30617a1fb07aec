"""What a Vision Transformer looks at and what it learned, as pictures in the run dir (and W&B).

- after each validation: attention rollout (Abnar & Zuidema, 2020) over a few fixed validation
  images, ``attention_rollout/epochNNN.png``: each image above its rollout heatmap;
- at the end of training: the cosine similarity of each patch's position embedding to every
  other, one small grid per patch laid out as the image (ViT paper, fig. 7),
  ``position_embeddings.png``;
- at the end of testing: the confusion matrix of the test split, ``confusion_matrix.png``.

Needs a DataModule with ``examples(split, count)`` and ``class_names`` and a model with
``rollout(images) -> (B, g, g)``, ``position_embeddings (1, 1 + g*g, D)`` and ``grid_size``
(``attnlab.models.vit.VisionTransformer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

from attnlab.utils.media import log_image
from attnlab.viz import plt, save_figure


def plot_rollout(
    pixels: Tensor, relevance: Tensor, titles: list[str], path: Path, title: str = ""
) -> Path:
    """Images (N, C, H, W) uint8 on top, each overlaid below with its (N, g, g) relevance."""
    count = pixels.size(0)
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), squeeze=False)
    for i in range(count):
        image = pixels[i].permute(1, 2, 0).numpy()
        grey = image.shape[-1] == 1
        heat = relevance[i] / relevance[i].max().clamp(min=1e-12)
        height, width = image.shape[:2]
        for row in (0, 1):
            ax = axes[row][i]
            ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None)
            ax.axis("off")
        axes[0][i].set_title(titles[i], fontsize=8)
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)  # the grid stretched over the image
        axes[1][i].imshow(heat, cmap="jet", alpha=0.5, extent=extent, interpolation="bilinear")
    fig.suptitle(title or "attention rollout", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def position_similarity_mosaic(positions: Tensor, grid_size: int) -> np.ndarray:
    """(g*g, D) embeddings -> a (g*(g+1), g*(g+1)) picture: block (r, c) holds the cosine
    similarity of patch (r, c)'s embedding to every patch's, NaN lines between blocks."""
    unit = F.normalize(positions.float(), dim=-1)
    similarity = (unit @ unit.T).reshape(grid_size, grid_size, grid_size, grid_size)
    step = grid_size + 1
    mosaic = np.full((grid_size * step, grid_size * step), np.nan)
    for row in range(grid_size):
        for col in range(grid_size):
            block = similarity[row, col].numpy()
            mosaic[row * step : row * step + grid_size, col * step : col * step + grid_size] = block
    return mosaic


def plot_position_similarity(positions: Tensor, grid_size: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 6))
    image = ax.imshow(position_similarity_mosaic(positions, grid_size), cmap="viridis", vmin=-1)
    fig.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_title("position embeddings: one patch's cosine similarity to all, per block", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(matrix: Tensor, class_names: list[str], path: Path) -> Path:
    """Counts (true rows x predicted columns), written in each cell."""
    size = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * size, 1.0 + 0.5 * size))
    ax.imshow(matrix, cmap="Blues")
    top = max(int(matrix.max()), 1)
    for (row, col), count in np.ndenumerate(matrix.numpy()):
        color = "white" if count > top / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(size), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(size), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = matrix.diag().sum().item() / max(matrix.sum().item(), 1)
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.3f})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


class ViTPictures(L.Callback):
    def __init__(self, num_images: int = 8, every_n_epochs: int = 1) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.predictions: list[Tensor] = []
        self.labels: list[Tensor] = []

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        batch = pl_module.data.first(self.num_images)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            images = batch["images"].to(pl_module.device)
            predicted = pl_module(images).argmax(-1).cpu()
            relevance = pl_module.net.rollout(images).float().cpu()
        pl_module.train(was_training)
        names = pl_module.data.class_names
        titles = [
            f"{names[y]} -> {names[p]}" for y, p in zip(batch["labels"], predicted, strict=True)
        ]
        name = f"epoch{trainer.current_epoch:03d}.png"
        out = Path(trainer.default_root_dir) / "attention_rollout" / name
        title = f"attention rollout, epoch {trainer.current_epoch} (true -> predicted)"
        plot_rollout(batch["pixels"], relevance, titles, out, title)
        log_image(trainer, "val/attention_rollout", out)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = pl_module.net
        positions = net.position_embeddings.detach()[0, 1:].cpu()  # the patches, not CLS
        out = Path(trainer.default_root_dir) / "position_embeddings.png"
        plot_position_similarity(positions, net.grid_size, out)
        log_image(trainer, "position_embeddings", out)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.predictions, self.labels = [], []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        with torch.no_grad():
            self.predictions.append(pl_module(batch["images"]).argmax(-1).cpu())
        self.labels.append(batch["labels"].cpu())

    @rank_zero_only
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = pl_module.data.class_names
        matrix = multiclass_confusion_matrix(
            torch.cat(self.predictions), torch.cat(self.labels), len(names)
        )
        out = Path(trainer.default_root_dir) / "confusion_matrix.png"
        plot_confusion_matrix(matrix, names, out)
        log_image(trainer, "test/confusion_matrix", out)
