"""The Vision Transformer (Dosovitskiy et al., 2021): an image read as a sequence of patches.

    x = [CLS; P_1 E; ...; P_N E] + E_pos       (N = (image_size / patch_size)^2 patches)
    z = Encoder(x)                             (pre-norm layers, then a final LayerNorm)
    y = head(z_0)  or  head(mean_i z_i)        (the CLS token, or mean pooling of the patches)

Each P_i is a ``patch_size`` x ``patch_size`` square of the image, flattened, and E a linear map
to ``d_model``; a Conv2d with kernel = stride = patch size computes exactly this
(``PatchEmbedding``; ``LinearPatchEmbedding`` is the paper's flatten-then-project form, equal
given the same weights). The encoder is the project's ``Encoder``; ``attnlab.hf.vit`` names,
parameter by parameter, where Hugging Face's ViT keeps the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.positional import sinusoidal_table
from attnlab.models.transformer import Encoder, EncoderConfig

POOLINGS = ("cls", "mean")
STEMS = ("patch", "conv", "auto")
VIT_POSITIONAL_KINDS = ("learned", "sinusoidal")
AUTO_GRID = 7  # patch_size="auto": the patch size whose grid is nearest 7x7 (28 px -> 4, 14 -> 2)


def auto_patch_size(image_size: int, grid: int = AUTO_GRID) -> int:
    """The divisor of ``image_size`` giving the patch grid nearest ``grid`` per side (the
    smaller patch on a tie): about 50 tokens, what the tiny default ViT is sized for, at any
    image size (28 -> 4, 14 -> 2, 32 -> 4, 8 -> 1, 224 -> 32)."""
    sizes = [p for p in range(1, image_size + 1) if image_size % p == 0]
    return min(sizes, key=lambda p: (abs(image_size // p - grid), p))


SMALL_PATCH = 4  # patch_kernel="auto": a patch narrower than this reads a window 3 patches wide


def auto_patch_kernel(patch_size: int) -> int:
    """The window each patch token reads under ``patch_kernel="auto"``: the patch itself from 4
    pixels up (the paper), three patches wide below that (2 -> 6, 1 -> 3). A patch of 1-2
    pixels holds too little of a stroke to embed on its own: on 1,000 14-pixel digits (2-pixel
    patches) the 6-pixel window took the test accuracy from 0.907 to 0.933 (six seeds), while
    at 28 pixels (4-pixel patches) wider windows did not help (README)."""
    return patch_size if patch_size >= SMALL_PATCH else 3 * patch_size


def auto_stem(patch_size: int, window: bool = False) -> str:
    """The stem under ``stem="auto"``: the conv stem where the patch is a power of 2 from 4
    pixels up (two or more stride-2 stages); the patch stem below that (with its window,
    ``auto_patch_kernel``) and wherever a ``window`` wider than the patch is asked for. At 28
    pixels (4-pixel patches) the conv stem read 0.983 +- 0.008 on the 500 test digits against
    the patch stem's 0.974 +- 0.007, ahead on each of six seeds (README); at 14 pixels a single
    stage is one 3x3 convolution, no better than the 6-pixel window there."""
    is_power_of_2 = patch_size & (patch_size - 1) == 0
    return "conv" if patch_size >= SMALL_PATCH and is_power_of_2 and not window else "patch"


def _patch_grid(image_size: int, patch_size: int) -> int:
    """Patches per side; a clear error when the image does not tile into whole patches."""
    if patch_size < 1 or image_size % patch_size:
        fits = [p for p in range(1, image_size + 1) if image_size % p == 0]
        raise ValueError(
            f"image_size {image_size} is not divisible by patch_size {patch_size}: the image must "
            f"tile into whole patches; use a patch_size in {fits} or resize the images "
            f"(data.image_size, data.resize=true)"
        )
    return image_size // patch_size


def _check_images(images: Tensor, channels: int, image_size: int) -> None:
    expected = (channels, image_size, image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images must be (batch, {channels}, {image_size}, {image_size}) for this model, got "
            f"{tuple(images.shape)}; build the model with the data's channels and image_size"
        )


class PatchEmbedding(nn.Module):
    """(B, C, H, W) -> (B, N, D): Conv2d with kernel = stride = patch size, patches row-major.

    A ``kernel_size`` larger than the patch makes each token read an overlapping window
    centred on its patch (zero-padded at the border), as the overlapping patch embeddings of
    PVTv2 and CvT do: the same grid of tokens, with the locality a small dataset cannot teach.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        channels: int,
        d_model: int,
        kernel_size: int | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        self.grid_size = _patch_grid(image_size, patch_size)
        self.num_patches = self.grid_size**2
        kernel_size = kernel_size or patch_size
        if kernel_size < patch_size or (kernel_size - patch_size) % 2:
            raise ValueError(
                f"model.patch_kernel={kernel_size} must be patch_size ({patch_size}) plus an even "
                f"number of pixels (the same overlap on every side), e.g. {patch_size + 2}"
            )
        self.projection = nn.Conv2d(
            channels,
            d_model,
            kernel_size=kernel_size,
            stride=patch_size,
            padding=(kernel_size - patch_size) // 2,
        )

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, self.channels, self.image_size)
        return self.projection(images).flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """(B, C, H, W) -> (B, N, D): the patch grid by 3x3 convolutions at stride 2, not one patchify.

    Xiao et al. (2021, "Early convolutions help transformers see better"): log2(patch_size)
    conv-BatchNorm-ReLU stages, each halving the side and doubling the channels up to
    ``d_model``, then a 1x1 convolution to ``d_model``. The same grid of tokens as
    ``PatchEmbedding``, for a few percent more FLOPs, with the locality and translation
    equivariance a small dataset cannot teach a single linear patch map.
    """

    def __init__(self, image_size: int, patch_size: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        self.grid_size = _patch_grid(image_size, patch_size)
        self.num_patches = self.grid_size**2
        stages = patch_size.bit_length() - 1
        if patch_size < 2 or patch_size != 2**stages:
            raise ValueError(
                f"model.stem=conv halves the image per stage, so patch_size must be a power of 2 "
                f"(got {patch_size}); use model.stem=patch or a patch_size in (2, 4, 8, 16)"
            )
        widths = [channels] + [max(d_model >> (stages - i), 1) for i in range(1, stages + 1)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.projection = nn.Conv2d(widths[-1], d_model, kernel_size=1)

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, self.channels, self.image_size)
        return self.projection(self.convs(images)).flatten(2).transpose(1, 2)


class LinearPatchEmbedding(nn.Module):
    """The paper's eq. 1: cut into patches, flatten each (channel, row, column), project."""

    def __init__(self, image_size: int, patch_size: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        self.patch_size = patch_size
        self.grid_size = _patch_grid(image_size, patch_size)
        self.projection = nn.Linear(channels * patch_size**2, d_model)

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, self.channels, self.image_size)
        patches = F.unfold(images, kernel_size=self.patch_size, stride=self.patch_size)
        return self.projection(patches.transpose(1, 2))  # (B, C*P*P, N) -> (B, N, D)

    @torch.no_grad()
    def load_conv(self, conv: PatchEmbedding) -> None:
        """Take a PatchEmbedding's weights: a conv kernel is one row of the linear map."""
        self.projection.weight.copy_(conv.projection.weight.flatten(1))
        self.projection.bias.copy_(conv.projection.bias)


def sinusoidal_2d_table(grid_size: int, d_model: int) -> Tensor:
    """(grid_size^2, d_model) fixed 2-D positions: half the dims encode the row, half the column.

    Each half is the 1-D sinusoidal table of Vaswani et al. (as in MAE's 2-D sin-cos encoding).
    """
    if d_model % 2:
        raise ValueError(f"2-D sinusoidal positions need an even d_model (got {d_model})")
    axis = sinusoidal_table(grid_size, d_model // 2)  # (g, D/2)
    rows = axis[:, None, :].expand(grid_size, grid_size, -1)
    cols = axis[None, :, :].expand(grid_size, grid_size, -1)
    return torch.cat([rows, cols], dim=-1).reshape(grid_size**2, d_model)


def attention_rollout(maps: list[Tensor]) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token feeds each output.

    Per layer: average the heads, add the identity for the residual path, renormalise rows;
    then multiply through the layers, R = A_L ... A_2 A_1. ``maps`` [(B, H, T, T)] -> (B, T, T).
    """
    rollout = None
    for weights in maps:
        joint = weights.mean(1)
        joint = joint + torch.eye(joint.size(-1), dtype=joint.dtype, device=joint.device)
        joint = joint / joint.sum(-1, keepdim=True)
        rollout = joint if rollout is None else joint @ rollout
    return rollout


class VisionTransformer(nn.Module):
    """Patch embedding, CLS token, positions, pre-norm Encoder with final LN, linear head.

    The CLS token is always at position 0 (so the sequence layout, the attention maps and the
    Hugging Face weights are the same for both poolings); ``pooling="mean"`` classifies the mean
    of the patch tokens instead of the CLS token. CLS and learned positions start N(0, 0.02),
    truncated at 2 std, as in Hugging Face's ViT. ``patch_kernel`` (> ``patch_size``) lets each
    patch token read an overlapping window (``PatchEmbedding``); ``"auto"`` widens only patches
    of 1-2 pixels (``auto_patch_kernel``). ``stem="conv"`` reaches the patch grid through
    ``ConvStem`` instead; ``"auto"`` takes it from 4-pixel patches up (``auto_stem``).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 28,
        patch_size: int | str = 4,
        channels: int = 1,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 4,
        d_ff: int = 128,
        dropout: float = 0.1,
        attention_probs_dropout: float | None = None,
        positional: str = "learned",
        pooling: str = "cls",
        layer_norm_eps: float = 1e-6,
        attn_impl: str = "sdpa",
        last_layer_cls_only: bool = True,
        patch_kernel: int | str | None = None,
        stem: str = "patch",
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"model.stem='{stem}' is unknown; use one of {STEMS}")
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling='{pooling}' is unknown; use one of {POOLINGS}")
        if positional not in VIT_POSITIONAL_KINDS:
            raise ValueError(
                f"model.positional='{positional}' is unknown; use one of {VIT_POSITIONAL_KINDS}"
            )
        self.pooling = pooling
        self.last_layer_cls_only = last_layer_cls_only
        if patch_size == "auto":
            patch_size = auto_patch_size(image_size)
        elif not isinstance(patch_size, int):
            raise ValueError(f"model.patch_size={patch_size!r}: give a number of pixels or auto")
        window = isinstance(patch_kernel, int) and patch_kernel != patch_size
        if stem == "conv" and window:
            raise ValueError(
                f"model.patch_kernel={patch_kernel} is a window of the patch stem; model.stem=conv "
                f"builds its own from 3x3 convolutions: set model.stem=patch or patch_kernel=auto"
            )
        if stem == "auto":
            stem = auto_stem(patch_size, window)
        if patch_kernel == "auto":
            patch_kernel = auto_patch_kernel(patch_size)
        elif patch_kernel is not None and not isinstance(patch_kernel, int):
            raise ValueError(
                f"model.patch_kernel={patch_kernel!r}: give a number of pixels, auto or null"
            )
        if stem == "conv":
            self.patch_embedding = ConvStem(image_size, patch_size, channels, d_model)
        else:
            self.patch_embedding = PatchEmbedding(
                image_size, patch_size, channels, d_model, patch_kernel
            )
        self.grid_size = self.patch_embedding.grid_size
        num_tokens = 1 + self.patch_embedding.num_patches
        self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, d_model), std=0.02))
        if positional == "learned":
            table = nn.init.trunc_normal_(torch.zeros(1, num_tokens, d_model), std=0.02)
            self.position_embeddings = nn.Parameter(table)
        else:  # CLS gets the zero vector: it has no place in the grid
            grid = sinusoidal_2d_table(self.grid_size, d_model)
            table = torch.cat([torch.zeros(1, d_model), grid])
            self.register_buffer("position_embeddings", table[None], persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder = Encoder(EncoderConfig.of(locals(), activation="gelu", norm_first=True))
        self.head = nn.Linear(d_model, num_classes)

    def embed(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> tokens (B, 1 + N, D): CLS then the patches, plus positions, dropout."""
        patches = self.patch_embedding(images)
        cls = self.cls_token.expand(patches.size(0), -1, -1)
        return self.dropout(torch.cat([cls, patches], dim=1) + self.position_embeddings)

    def encode(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> final hidden states (B, 1 + N, D), after the final LayerNorm."""
        hidden, _ = self.encoder(self.embed(images))
        return hidden

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes).

        With CLS pooling the head reads one row, so (``last_layer_cls_only``) the last layer
        computes only that row: every token is still its key and value, but the queries, the
        output projection and the feed-forward of the other rows are skipped (about a fifth of
        the FLOPs with 4 layers). The logits and gradients are those of the full layer.
        """
        if self.pooling == "cls" and self.last_layer_cls_only:
            cls_row = torch.zeros(images.size(0), 1, dtype=torch.long, device=images.device)
            hidden, _ = self.encoder(self.embed(images), output_rows=cls_row)
            return self.head(hidden[:, 0])
        hidden = self.encode(images)
        pooled = hidden[:, 0] if self.pooling == "cls" else hidden[:, 1:].mean(1)
        return self.head(pooled)

    def attention_maps(self, images: Tensor) -> list[Tensor]:
        """The self-attention weights of every layer, [(B, H, 1 + N, 1 + N)], for plots."""
        _, weights = self.encoder(self.embed(images), need_weights=True)
        return weights

    def rollout(self, images: Tensor) -> Tensor:
        """(B, grid, grid): how much each patch feeds what the head reads, by attention rollout.

        The CLS row of the rollout, or with mean pooling the mean of the patch rows.
        """
        rollout = attention_rollout(self.attention_maps(images))
        relevance = rollout[:, 0, 1:] if self.pooling == "cls" else rollout[:, 1:, 1:].mean(1)
        return relevance.reshape(-1, self.grid_size, self.grid_size)
