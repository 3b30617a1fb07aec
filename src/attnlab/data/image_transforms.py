"""Image tensors made to fit a model (size, channels) and augmented, and their batches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.errors import DataError

LUMA = torch.tensor([0.299, 0.587, 0.114])  # RGB -> grey as PIL's convert("L")


def resize_images(images: Tensor, size: int) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing."""
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


def convert_channels(images: Tensor, channels: int) -> Tensor:
    """uint8 (N, C, H, W) with C in 1, 3, 4 -> ``channels`` (1: grey, 3: RGB; alpha dropped)."""
    have = images.size(1)
    if have == 4:
        images, have = images[:, :3], 3
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        grey = (images.float() * LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8)
    raise DataError(f"cannot turn {have}-channel images into {channels}: use data.channels 1 or 3")


def shift_pixels(shift: float, image_size: int) -> int:
    """``data.augment.shift`` in pixels: a whole number of pixels as given, or a fraction of the
    image side (below 1), so one setting means the same for 8- and 224-pixel images (0.07: 2 of
    28 pixels, 1 of 14)."""
    if shift < 0:
        raise DataError(f"data.augment.shift={shift} must be >= 0 (pixels, or a fraction below 1)")
    return round(shift * image_size) if shift < 1 else int(shift)


def random_shift(images: Tensor, max_shift: int) -> Tensor:
    """Shift each image by up to ``max_shift`` pixels each way: zero-pad, crop at random."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (batch, 1))
    dx = torch.randint(0, 2 * max_shift + 1, (batch, 1))
    rows = (dy + torch.arange(height))[:, :, None]  # (B, H, 1)
    cols = (dx + torch.arange(width))[:, None, :]  # (B, 1, W)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(batch)[:, None, None], rows, cols]
    return picked.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def random_affine(images: Tensor, max_degrees: float, max_scale: float) -> Tensor:
    """Rotate each image by up to ``max_degrees`` either way and zoom it by a factor in
    ``1 +- max_scale`` about its centre (bilinear, zeros outside): the pose changes a small
    dataset lacks, which a ViT, with no convolutional prior, must learn from examples."""
    batch = images.size(0)
    angle = (torch.rand(batch) * 2 - 1) * math.radians(max_degrees)
    zoom = 1 + (torch.rand(batch) * 2 - 1) * max_scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros(batch)
    # affine_grid maps output to input coordinates: dividing by the zoom enlarges the image.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_hflip(images: Tensor) -> Tensor:
    """Mirror a random half of the images left-right."""
    flip = torch.rand(images.size(0)) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class ImageBatch:
    """(uint8 image, label) examples -> {"images": normalised float, "labels"}, augmented first
    when ``rotate``/``scale``/``shift``/``hflip`` are set (the training loader)."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        shift: int = 0,
        hflip: bool = False,
        rotate: float = 0.0,
        scale: float = 0.0,
    ) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.shift = shift
        self.hflip = hflip
        self.rotate = rotate
        self.scale = scale

    def __call__(self, examples: Sequence[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        images = torch.stack([image for image, _ in examples]).float() / 255
        if self.rotate or self.scale:
            images = random_affine(images, self.rotate, self.scale)
        if self.shift:
            images = random_shift(images, self.shift)
        if self.hflip:
            images = random_hflip(images)
        labels = torch.stack([label for _, label in examples])
        return {"images": (images - self.mean) / self.std, "labels": labels}
