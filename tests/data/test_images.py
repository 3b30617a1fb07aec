"""ImageDataModule: the embedded digits, splits, normalisation, augmentation, image
folders (and their bad files, named), IDX files, and a checkpoint's state without data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import digit_folder
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from hydra.utils import instantiate

from attnlab.data.image_files import read_idx
from attnlab.data.image_transforms import (
    convert_channels,
    random_affine,
    random_hflip,
    random_shift,
    resize_images,
    shift_pixels,
)
from attnlab.data.images import ImageDataModule
from attnlab.data.sources import EMBEDDED_DIR, SPLITS
from attnlab.errors import DataError

EMBEDDED = {"embedded": "mnist_5k.npz"}


@pytest.fixture(scope="module")
def digits() -> ImageDataModule:
    datamodule = ImageDataModule(source=EMBEDDED, augment={"shift": 2}, batch_size=64)
    datamodule.setup()
    return datamodule


def test_embedded_digits_load_with_their_properties_before_setup() -> None:
    datamodule = ImageDataModule(source=EMBEDDED)
    assert (datamodule.num_classes, datamodule.image_size, datamodule.channels) == (10, 28, 1)
    assert datamodule.class_names == [str(d) for d in range(10)]


def test_splits_are_disjoint_shuffled_and_sized(digits: ImageDataModule) -> None:
    sizes = {name: len(digits.splits[name][1]) for name in SPLITS}
    assert sizes == {"train": 4050, "validation": 450, "test": 500}  # 10% test, 10% of the rest
    for name in SPLITS:
        images, labels = digits.splits[name]
        assert images.dtype == torch.uint8 and images.shape[1:] == (1, 28, 28)
        counts = torch.bincount(labels, minlength=10)
        assert counts.min() > 0.6 * counts.float().mean(), (name, counts)  # sorted source mixed
    flat = {name: {bytes(x.numpy()) for x in digits.splits[name][0]} for name in SPLITS}
    assert not flat["train"] & flat["test"] and not flat["validation"] & flat["test"]
    with np.load(EMBEDDED_DIR / "mnist_5k.npz") as raw:
        every = {bytes(x) for x in raw["images"][:, None]}
    assert flat["train"] | flat["validation"] | flat["test"] <= every


def test_the_same_seed_gives_the_same_splits(digits: ImageDataModule) -> None:
    again = ImageDataModule(source=EMBEDDED)
    again.setup()
    assert torch.equal(again.splits["test"][1], digits.splits["test"][1])
    other = ImageDataModule(source=EMBEDDED, seed=7)
    other.setup()
    assert not torch.equal(other.splits["test"][1], digits.splits["test"][1])


def test_normalisation_is_computed_on_train(digits: ImageDataModule) -> None:
    train = digits.splits["train"][0].float() / 255
    assert digits.interface.mean == pytest.approx([train.mean().item()], rel=1e-5)
    assert digits.interface.std == pytest.approx([train.std().item()], rel=1e-4)
    assert (
        0.1 < digits.interface.mean[0] < 0.16 and 0.28 < digits.interface.std[0] < 0.34
    )  # MNIST's 0.1307, 0.3081
    images = torch.cat([b["images"] for b in digits.val_dataloader()])
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05


def test_configured_mean_and_std_are_used() -> None:
    datamodule = ImageDataModule(source=EMBEDDED, mean=0.5, std=[0.25])
    datamodule.setup()
    batch = datamodule.batch("test", 4)
    expected = (batch["pixels"].float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(batch["images"], expected)
    with pytest.raises(DataError, match=r"data.mean has 2 values for 1-channel images"):
        ImageDataModule(source=EMBEDDED, mean=[0.5, 0.5], std=[1, 1]).setup()


def test_training_batches_are_shifted_and_evaluation_batches_are_not(
    digits: ImageDataModule,
) -> None:
    train = next(iter(digits.train_dataloader()))
    assert train["images"].shape == (64, 1, 28, 28) and train["images"].dtype == torch.float32
    assert train["labels"].shape == (64,) and train["labels"].dtype == torch.long
    val = next(iter(digits.val_dataloader()))
    expected = (
        digits.splits["validation"][0][:64].float() / 255 - digits.interface.mean[0]
    ) / digits.interface.std[0]
    torch.testing.assert_close(val["images"], expected)


def test_a_shift_below_one_is_a_fraction_of_the_image_side() -> None:
    assert [shift_pixels(0.07, size) for size in (8, 14, 28, 224)] == [1, 1, 2, 16]
    assert shift_pixels(3, 14) == 3 and shift_pixels(0, 28) == 0  # pixels as given
    with pytest.raises(DataError, match=r"data.augment.shift=-1 must be >= 0"):
        shift_pixels(-1, 28)


def test_training_shifts_are_sized_to_the_images(tmp_path: Path) -> None:
    """The same data.augment.shift (a fraction) moves 14-pixel digits by 1 pixel at most; every
    augmentation is for the training batches only."""
    folder = digit_folder(tmp_path, size=14, per_class=4)
    augment = {"shift": 0.07, "rotate": 10, "scale": 0.1}
    datamodule = ImageDataModule(source={"folder": str(folder)}, augment=augment)
    datamodule.setup()
    train = datamodule.train_dataloader().collate_fn
    assert (train.shift, train.rotate, train.scale) == (1, 10, 0.1)
    evaluation = datamodule.val_dataloader().collate_fn
    assert (evaluation.shift, evaluation.rotate, evaluation.scale) == (0, 0, 0)  # training only


def test_random_shift_moves_whole_images_by_at_most_the_padding() -> None:
    torch.manual_seed(0)
    images = torch.zeros(200, 2, 9, 9)
    images[:, :, 4, 4] = 1.0  # one bright pixel in the centre
    shifted = random_shift(images, 2)
    assert shifted.shape == images.shape
    assert torch.equal(shifted.sum((1, 2, 3)), torch.full((200,), 2.0))  # nothing cut off
    positions = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = positions // 9, positions % 9
    assert set(rows.tolist()) == {2, 3, 4, 5, 6} and set(cols.tolist()) == {2, 3, 4, 5, 6}
    assert torch.equal(shifted[:, 0], shifted[:, 1])  # channels move together


def test_random_shift_crops_what_leaves_the_frame() -> None:
    torch.manual_seed(0)
    images = torch.ones(100, 1, 6, 6)
    shifted = random_shift(images, 3)
    kept = shifted.sum((1, 2, 3))
    assert kept.min() < 36 and kept.max() == 36 and (shifted[:, :, 0] == 0).any()


def test_random_hflip_mirrors_about_half() -> None:
    torch.manual_seed(0)
    images = torch.arange(4.0).view(1, 1, 1, 4).expand(400, 3, 2, 4)
    flipped = random_hflip(images)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    assert ((flipped == images).flatten(1).all(1) | mirrored).all()
    assert 150 < mirrored.sum() < 250


def test_random_affine_without_rotation_or_zoom_is_the_identity() -> None:
    images = torch.rand(8, 3, 10, 10)
    torch.testing.assert_close(random_affine(images, 0.0, 0.0), images, atol=1e-6, rtol=0)


def test_random_rotation_turns_a_bar_and_keeps_a_disc() -> None:
    """Rotations about the centre: a centred disc stays itself, a horizontal bar tilts by a
    different angle in each image, up to the limit (a bar turned by 30 degrees at most never
    reaches the vertical)."""
    torch.manual_seed(0)
    coords = torch.arange(21.0) - 10
    radius = (coords[:, None] ** 2 + coords[None, :] ** 2).sqrt()
    disc = (radius <= 6).float().expand(50, 1, 21, 21)
    changed = (random_affine(disc, 30.0, 0.0) - disc).abs()[:, 0]
    assert changed[:, (radius < 4.5) | (radius > 7.5)].max() < 1e-5  # only the rim changes
    bar = torch.zeros(50, 1, 21, 21)
    bar[:, :, 10, 2:19] = 1.0
    turned = random_affine(bar, 30.0, 0.0)
    off_row = turned[:, 0].sum(2)[:, [r for r in range(21) if r not in (9, 10, 11)]].sum(1)
    assert (off_row > 1).float().mean() > 0.5  # most bars leave their row
    assert turned[:, 0, :, 10].sum(1).max() < 3  # none stands upright in the centre column


def test_random_zoom_scales_the_area_within_the_limit() -> None:
    torch.manual_seed(0)
    square = torch.zeros(200, 1, 32, 32)
    square[:, :, 12:20, 12:20] = 1.0
    area = random_affine(square, 0.0, 0.25).sum((1, 2, 3)) / 64
    assert area.min() > 0.75**2 - 0.05 and area.max() < 1.25**2 + 0.05
    assert area.min() < 0.8 and area.max() > 1.3  # both ways, not just the identity


def test_augmentation_is_off_by_default_and_unknown_augment_keys_are_errors() -> None:
    datamodule = ImageDataModule(source=EMBEDDED)
    assert datamodule.augment == {"shift": 0, "hflip": False, "rotate": 0.0, "scale": 0.0}
    with pytest.raises(DataError, match=r"unknown data.augment keys \['shear'\]"):
        ImageDataModule(source=EMBEDDED, augment={"shear": 10})


def test_channels_convert_grey_to_rgb_and_back() -> None:
    datamodule = ImageDataModule(source=EMBEDDED, channels=3)
    assert datamodule.channels == 3
    images = datamodule.splits["train"][0]
    assert images.shape[1:] == (3, 28, 28)
    assert torch.equal(images[:, 0], images[:, 2])
    assert torch.equal(convert_channels(images, 1), images[:, :1])
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["images"].shape[1] == 3 and len(datamodule.interface.mean) == 3


def test_resize_to_a_configured_size() -> None:
    with pytest.raises(DataError, match=r"are 28x28, not 32x32 .*data.resize=true"):
        ImageDataModule(source=EMBEDDED, image_size=32).setup()
    datamodule = ImageDataModule(source=EMBEDDED, image_size=32, resize=True)
    assert datamodule.image_size == 32
    assert datamodule.splits["test"][0].shape[1:] == (1, 32, 32)
    flat = torch.full((1, 1, 5, 7), 200, dtype=torch.uint8)
    assert torch.equal(resize_images(flat, 3), torch.full((1, 1, 3, 3), 200, dtype=torch.uint8))


def test_state_dict_restores_what_the_model_needs_without_data(
    digits: ImageDataModule,
) -> None:
    restored = ImageDataModule(source={"embedded": "does_not_exist.npz"})
    restored.load_state_dict(digits.state_dict())
    assert restored.class_names == digits.class_names
    assert (restored.image_size, restored.channels) == (28, 1)
    assert (restored.interface.mean, restored.interface.std) == (
        digits.interface.mean,
        digits.interface.std,
    )


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown data.source keys \['files'\]"):
        ImageDataModule(source={"files": "x.csv"})
    with pytest.raises(DataError, match="no data source"):
        ImageDataModule(source={"embedded": None}).setup()
    with pytest.raises(DataError, match=r"image folder not found: '.*nope'"):
        ImageDataModule(source={"folder": str(tmp_path / "nope")}).setup()
    with pytest.raises(DataError, match="data.channels=2"):
        ImageDataModule(source=EMBEDDED, channels=2)


# --- a local image folder ------------------------------------------------------------------


def _write_folder(root: Path, size: int = 8, per_class: int = 6, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for name, brightness in (("cat", 40), ("dog", 200)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 30, (size, size, 3)) + brightness
            image = PIL.Image.fromarray(pixels.astype(np.uint8)).convert(mode)
            image.save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_classes_from_sub_folders(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "pets")
    datamodule = ImageDataModule(
        source={"folder": str(folder)}, val_fraction=0.25, test_fraction=0.25
    )
    assert datamodule.class_names == ["cat", "dog"]
    assert (datamodule.image_size, datamodule.channels) == (8, 1)
    images = {name: datamodule.splits[name][0] for name in SPLITS}
    assert sum(len(x) for x in images.values()) == 12
    for name in SPLITS:  # cats are dark, dogs bright: labels travel with their images
        pixels, labels = datamodule.splits[name]
        brightness = pixels.float().mean((1, 2, 3))
        assert ((brightness > 120) == (labels == 1)).all()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["images"].shape[1:] == (1, 8, 8)


def test_image_folder_with_split_folders_and_rgb(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data" / "train", mode="RGB")
    _write_folder(tmp_path / "data" / "test", per_class=2, mode="RGB")
    datamodule = ImageDataModule(source={"folder": str(tmp_path / "data")})
    assert datamodule.channels == 3
    assert len(datamodule.splits["test"][1]) == 4  # the folder's own test split
    assert len(datamodule.splits["train"][1]) + len(datamodule.splits["validation"][1]) == 12


def test_a_corrupted_image_is_reported_by_file_name(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "pets")
    bad = folder / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DataError, match=rf"cannot read image '{bad}'.*Replace or delete"):
        ImageDataModule(source={"folder": str(folder)}).setup()


def test_a_truncated_image_is_reported_by_file_name(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "pets", size=64)
    bad = folder / "cat" / "3.png"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"cannot read image '{bad}'"):
        ImageDataModule(source={"folder": str(folder)}).setup()


def test_a_wrongly_sized_image_is_reported_by_file_name(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "pets")
    odd = folder / "dog" / "big.png"
    PIL.Image.new("L", (10, 8)).save(odd)
    with pytest.raises(DataError, match=rf"image '{odd}' are 10x8, not 8x8 .*data.resize=true"):
        ImageDataModule(source={"folder": str(folder)}).setup()
    datamodule = ImageDataModule(source={"folder": str(folder)}, image_size=8, resize=True)
    datamodule.setup()
    assert sum(len(datamodule.splits[n][1]) for n in SPLITS) == 13


def test_hub_style_datasets_are_read_through_their_columns(monkeypatch, tmp_path: Path) -> None:
    """A hub dataset is a DatasetDict with an Image column: built here, served by load_hub."""
    folder = _write_folder(tmp_path / "pets")
    files = sorted(folder.glob("*/*.png"))
    features = Features({"img": Image(), "fine_label": ClassLabel(names=["cat", "dog"])})
    labels = [int(f.parent.name == "dog") for f in files]
    table = {"img": [str(f) for f in files], "fine_label": labels}
    hub = DatasetDict({"train": Dataset.from_dict(table, features=features)})
    monkeypatch.setattr("attnlab.data.images.load_hub", lambda name, config=None: hub)
    source = {"hub": "someone/pets"}
    with pytest.raises(DataError, match=r"column 'image' \(data.image_column\) not found"):
        ImageDataModule(source=source, label_column="fine_label").setup()
    datamodule = ImageDataModule(
        source=source, image_column="img", label_column="fine_label", test_fraction=0.25
    )
    assert datamodule.class_names == ["cat", "dog"] and datamodule.image_size == 8


# --- IDX files -----------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> Path:
    """The IDX format written independently of the reader: magic 0 0 0x08 ndim, dims, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8) % 3
    assert np.array_equal(read_idx(write_idx(tmp_path / f"images.idx{suffix}", images)), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / f"labels.idx{suffix}", labels)), labels)


def test_idx_files_as_a_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (40, 6, 6)), rng.integers(0, 256, (10, 6, 6))
    paths = {
        "train_images": write_idx(tmp_path / "train-images.gz", train),
        "train_labels": write_idx(tmp_path / "train-labels.gz", np.arange(40) % 4),
        "test_images": write_idx(tmp_path / "test-images", test),
        "test_labels": write_idx(tmp_path / "test-labels", np.arange(10) % 4),
    }
    names = ["a", "b", "c", "d"]
    datamodule = ImageDataModule(
        source={"idx": {k: str(v) for k, v in paths.items()}}, class_names=names, val_fraction=0.25
    )
    assert datamodule.class_names == names and datamodule.image_size == 6
    assert np.array_equal(datamodule.splits["test"][0][:, 0].numpy(), test)  # test kept in order
    assert [len(datamodule.splits[n][1]) for n in SPLITS] == [30, 10, 10]


def test_bad_idx_files_are_clear_errors(tmp_path: Path) -> None:
    not_idx = tmp_path / "x.idx"
    not_idx.write_bytes(b"PK\x03\x04 something else")
    with pytest.raises(DataError, match=r"is not an IDX file"):
        read_idx(not_idx)
    truncated = write_idx(tmp_path / "t.idx", np.zeros((4, 3, 3)))
    truncated.write_bytes(truncated.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"header promises shape \(4, 3, 3\).*truncated"):
        read_idx(truncated)
    labels = write_idx(tmp_path / "l.idx", np.zeros(4) + 5)
    images = write_idx(tmp_path / "i.idx", np.zeros((4, 2, 2)))
    with pytest.raises(DataError, match="give both train_images and train_labels"):
        ImageDataModule(source={"idx": {"train_images": str(images)}}).setup()
    with pytest.raises(DataError, match="keys are SPLIT_images"):
        ImageDataModule(source={"idx": {"train_pictures": "x"}}).setup()
    idx = {"train_images": str(images), "train_labels": str(labels)}
    with pytest.raises(DataError, match=r"labels go up to 5 but there are 2 class names"):
        ImageDataModule(source={"idx": idx}, class_names=["x", "y"]).setup()


def test_fashion_mnist_config_points_at_the_debian_package(compose) -> None:
    cfg = compose(["experiment=vit", "data=fashion_mnist_idx"])
    idx = cfg.data.source.idx
    assert sorted(idx) == ["test_images", "test_labels", "train_images", "train_labels"]
    assert all(p.startswith("/usr/share/datasets/fashion-mnist/") for p in idx.values())
    assert cfg.data.source.embedded is None and len(cfg.data.class_names) == 10
    if not Path(idx.train_images).is_file():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    assert [len(datamodule.splits[n][1]) for n in SPLITS] == [54_000, 6_000, 10_000]
    assert datamodule.class_names[9] == "Ankle boot"
