"""Images and class labels as normalised tensors, for the Vision Transformer.

Sources (the first one set wins, as in ``load_splits``): a hub dataset with an image and a label
column, a local folder read by datasets' ``imagefolder`` (``folder/CLASS/IMAGE.png``, optionally
under ``train/``, ``validation/``, ``test/``), MNIST-format IDX files (``.gz`` too), or the
embedded 5,000 MNIST digits (``embedded/mnist_5k.npz``, sorted by label). Everything is decoded
once into uint8 tensors (N, C, H, W) held in memory, which suits MNIST- and CIFAR-sized data.
Missing validation/test splits are carved from train by ``ensure_splits`` (a seeded shuffle).

Batches are ``{"images": float (B, C, H, W), "labels": (B,)}``: pixels scaled to [0, 1], in
training optionally rotated and zoomed, randomly shifted (zero padding, then a random crop) and
optionally flipped, then normalised with per-channel mean/std from the config or computed on the
train split.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Image
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from attnlab.data.base import SplitDataModule
from attnlab.data.image_files import GREY_MODES, load_image_folder, read_idx
from attnlab.data.image_transforms import (
    ImageBatch,
    convert_channels,
    resize_images,
    shift_pixels,
)
from attnlab.data.interface import ImageInterface
from attnlab.data.sources import (
    EMBEDDED_DIR,
    SPLIT_ALIASES,
    SPLITS,
    DataError,
    ensure_splits,
    load_hub,
    require_columns,
)

SOURCE_KEYS = ("hub", "hub_config", "folder", "idx", "embedded")
AUGMENT_DEFAULTS = {"shift": 0, "hflip": False, "rotate": 0.0, "scale": 0.0}


def _as_list(value: float | Sequence[float] | None) -> list[float] | None:
    if value is None:
        return None
    return [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]


class ImageDataModule(SplitDataModule):
    """Image classification data from a hub dataset, an image folder, IDX files or the embedded
    digits.

    ``num_classes``, ``image_size``, ``channels`` and ``class_names`` are ready on first access,
    before ``setup``, so configs can hand them to the model (``${datamodule:image_size}``).
    ``image_size``/``channels`` null take the data's own; set, they are what every image must
    have (or is resized/converted to, with ``resize=true``; channels always convert).
    """

    def __init__(
        self,
        source: Mapping[str, Any],
        image_column: str = "image",
        label_column: str = "label",
        class_names: Sequence[str] | None = None,
        image_size: int | None = None,
        resize: bool = False,
        channels: int | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: Mapping[str, Any] | None = None,
        **splits_and_loader: Any,
    ) -> None:
        """``splits_and_loader``: batch size, workers, split fractions, seed (SplitDataModule).
        What the model and a checkpoint need goes into the interface; null entries are filled
        from the data."""
        interface = ImageInterface(
            class_names=list(class_names or []),
            image_size=image_size,
            channels=channels,
            mean=_as_list(mean),
            std=_as_list(std),
        )
        super().__init__(interface, **{"batch_size": 128, **splits_and_loader})
        unknown = set(source) - set(SOURCE_KEYS)
        if unknown:
            raise DataError(f"unknown data.source keys {sorted(unknown)}; use {SOURCE_KEYS}")
        unknown = set(augment or {}) - set(AUGMENT_DEFAULTS)
        if unknown:
            raise DataError(f"unknown data.augment keys {sorted(unknown)}; use {AUGMENT_DEFAULTS}")
        if channels not in (None, 1, 3):
            raise DataError(f"data.channels={channels}: use 1 (grey), 3 (RGB) or null (as stored)")
        self.source = dict(source)
        self.image_column = image_column
        self.label_column = label_column
        self.resize = resize
        self.augment = {**AUGMENT_DEFAULTS, **(augment or {})}
        self._restored = False  # set by load_state_dict: no data needed for the properties
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    # What the model needs, available before setup.
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        return self._ready().interface.class_names

    @property
    def image_size(self) -> int:
        return self._ready().interface.image_size

    @property
    def channels(self) -> int:
        return self._ready().interface.channels

    def _ready(self) -> ImageDataModule:
        if not self.splits and not self._restored:
            self._load()
        return self

    def _load(self) -> None:
        raw, names = self._read_source()
        info = self.interface
        if not info.class_names:
            info.class_names = names
        top = max(int(labels.max()) for _, labels in raw.values())
        if top >= len(info.class_names):
            raise DataError(
                f"labels go up to {top} but there are {len(info.class_names)} class names "
                f"({info.class_names[:5]}...): give data.class_names one name per class"
            )
        self.splits = self._carve(raw)
        if info.mean is None or info.std is None:  # else from the config or a checkpoint
            pixels = self.splits["train"][0].float().div(255).transpose(0, 1).flatten(1)
            info.mean = info.mean or pixels.mean(1).tolist()
            info.std = info.std or pixels.std(1).clamp(min=1e-6).tolist()
        for name, values in (("mean", info.mean), ("std", info.std)):
            if len(values) != info.channels:
                raise DataError(
                    f"data.{name} has {len(values)} values for {info.channels}-channel images: "
                    "give one per channel, or null to compute it on the train split"
                )

    def _read_source(self) -> tuple[dict[str, tuple[Tensor, Tensor]], list[str]]:
        """{split: (uint8 images (N, C, S, S), labels)} and the class names, from the source."""
        source = self.source
        if source.get("hub"):
            return self._from_datasets(load_hub(source["hub"], source.get("hub_config")))
        if source.get("folder"):
            return self._from_datasets(load_image_folder(source["folder"]))
        if source.get("idx"):
            return self._from_arrays(self._read_idx_files(source["idx"]))
        if source.get("embedded"):
            return self._from_arrays(self._read_npz(EMBEDDED_DIR / source["embedded"]))
        raise DataError("no data source: set data.source.hub, folder, idx or embedded")

    @staticmethod
    def _read_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if not path.is_file():
            raise DataError(f"embedded file not found: '{path}' (data.source.embedded)")
        with np.load(path) as arrays:
            if not {"images", "labels"} <= set(arrays.files):
                raise DataError(f"'{path}' needs arrays 'images' and 'labels' (has {arrays.files})")
            return {"train": (arrays["images"], arrays["labels"])}

    @staticmethod
    def _read_idx_files(files: Mapping[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{train_images, train_labels, [validation_|test_]...}`` paths -> arrays per split."""
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for key, path in files.items():
            split, _, kind = key.rpartition("_")
            split = SPLIT_ALIASES.get(split, split)
            if split not in SPLITS or kind not in ("images", "labels"):
                raise DataError(
                    f"data.source.idx.{key}: keys are SPLIT_images / SPLIT_labels with SPLIT in "
                    f"{SPLITS} (e.g. train_images)"
                )
            if path:
                arrays.setdefault(split, {})[kind] = read_idx(path)
        if "train" not in arrays:
            raise DataError("data.source.idx needs train_images and train_labels")
        out = {}
        for split, pair in arrays.items():
            if set(pair) != {"images", "labels"}:
                raise DataError(f"data.source.idx: give both {split}_images and {split}_labels")
            if len(pair["images"]) != len(pair["labels"]):
                raise DataError(
                    f"data.source.idx: {len(pair['images'])} {split} images but "
                    f"{len(pair['labels'])} labels; the files do not belong together"
                )
            out[split] = (pair["images"], pair["labels"])
        return out

    def _from_arrays(
        self, arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> tuple[dict[str, tuple[Tensor, Tensor]], list[str]]:
        """uint8 arrays (N, H, W) or (N, H, W, C) with integer labels 0..K-1."""
        out = {}
        for split, (images, labels) in arrays.items():
            if images.ndim not in (3, 4) or images.dtype != np.uint8:
                raise DataError(
                    f"{split} images must be uint8 (N, H, W) or (N, H, W, C), got "
                    f"{images.dtype} {images.shape}"
                )
            tensor = torch.from_numpy(np.ascontiguousarray(images))
            tensor = tensor[:, None] if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)
            out[split] = (self._fit(tensor, f"the {split} images"), torch.from_numpy(labels).long())
        top = max(int(labels.max()) for _, labels in out.values())
        return out, [str(i) for i in range(top + 1)]

    def _fit(self, images: Tensor, name: str) -> Tensor:
        """Images (N, C, H, W) of one size -> the configured channels and size (or theirs)."""
        info = self.interface
        if info.channels is None:
            info.channels = 1 if images.size(1) == 1 else 3
        images = convert_channels(images, info.channels)
        height, width = images.shape[-2:]
        if info.image_size is None:
            if height != width:
                raise DataError(
                    f"{name} are {width}x{height}, not square: set data.image_size=S and "
                    "data.resize=true"
                )
            info.image_size = height
        size = info.image_size
        if (height, width) != (size, size):
            if not self.resize:
                raise DataError(
                    f"{name} are {width}x{height}, not {size}x{size} "
                    "(data.image_size or the first image): set data.resize=true, or remove it"
                )
            images = resize_images(images, size)
        return images

    def _from_datasets(
        self, splits: DatasetDict
    ) -> tuple[dict[str, tuple[Tensor, Tensor]], list[str]]:
        """A hub or imagefolder DatasetDict: decode every image, index the labels."""
        splits = {name: split for name, split in splits.items() if name in SPLITS}
        if "train" not in splits:
            raise DataError(f"the source has no 'train' split (it has {list(splits)})")
        columns = {"image_column": self.image_column, "label_column": self.label_column}
        for split in splits.values():
            require_columns(split, columns)
        feature = splits["train"].features[self.label_column]
        if isinstance(feature, ClassLabel):
            names = list(feature.names)
            index = None
        else:
            values = sorted({v for split in splits.values() for v in split[self.label_column]})
            names = [str(v) for v in values]
            index = {v: i for i, v in enumerate(values)}
        out = {}
        for name, split in splits.items():
            labels = split[self.label_column]
            labels = torch.tensor(labels if index is None else [index[v] for v in labels])
            out[name] = (self._decode(split, name), labels)
        return out, names

    def _decode(self, split: Dataset, split_name: str) -> Tensor:
        """Every image of ``split`` as uint8 (N, C, S, S); a bad one raises naming its file."""
        if isinstance(split.features[self.image_column], Image):
            split = split.cast_column(self.image_column, Image(decode=False))
        images = []
        for i, item in enumerate(split[self.image_column]):
            if isinstance(item, dict):  # an encoded image: {"bytes", "path"}
                name = item.get("path") or f"{split_name}[{i}]"
                array = self._open(item, name)
            else:  # an array column
                name, array = f"{split_name}[{i}]", np.asarray(item, dtype=np.uint8)
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            tensor = tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)
            images.append(self._fit(tensor[None], f"image '{name}'")[0])
        return torch.stack(images)

    def _open(self, item: Mapping[str, Any], name: str) -> np.ndarray:
        try:
            file = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            with PIL.Image.open(file) as image:
                if self.interface.channels is None:
                    self.interface.channels = 1 if image.mode in GREY_MODES else 3
                return np.array(image.convert("L" if self.interface.channels == 1 else "RGB"))
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError ... for bad files
            raise DataError(
                f"cannot read image '{name}': {error}. Replace or delete the file"
            ) from error

    def _carve(self, raw: dict[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
        """train/validation/test; a split the source lacks is a seeded random part of train."""
        index = DatasetDict(
            {name: Dataset.from_dict({"index": np.arange(len(y))}) for name, (_, y) in raw.items()}
        )
        carved = ensure_splits(index, self.seed, self.val_fraction, self.test_fraction)
        out = {}
        for name in SPLITS:
            images, labels = raw[name] if name in raw else raw["train"]
            rows = torch.from_numpy(carved[name].with_format("numpy")["index"][:])
            out[name] = (images[rows], labels[rows])
        return out

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self._load()
        self.keep_examples()

    def split_loader(self, split: str, train: bool) -> DataLoader:
        augment = {}
        if train:
            shift = shift_pixels(self.augment["shift"], self.interface.image_size)
            augment = {**self.augment, "shift": shift}
        return self.dataloader(
            TensorDataset(*self.splits[split]),
            batch_size=self.batch_size,
            shuffle=train,
            collate_fn=ImageBatch(self.interface.mean, self.interface.std, **augment),
        )

    def batch(self, split: str, count: int) -> dict[str, Tensor]:
        """The first ``count`` images of ``split``: ``pixels`` (uint8) and a model-ready batch."""
        images, labels = self.splits[split]
        examples = list(zip(images[:count], labels[:count], strict=True))
        batch = ImageBatch(self.interface.mean, self.interface.std)(examples)
        return {"pixels": images[:count], **batch}

    # Saved in checkpoints, so a checkpoint can be used without the data.
    def state_dict(self) -> dict[str, Any]:
        return self.interface.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.interface.load_state_dict(state)
        self._restored = True
