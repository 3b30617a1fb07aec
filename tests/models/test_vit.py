"""The Vision Transformer: patches and shapes, CLS at position 0, conv == unfold + linear,
attention rollout, size errors, the paper's presets, and Hugging Face's ViT as the reference."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from attnlab import pipeline
from attnlab.errors import ConfigError
from attnlab.hf.vit import hf_vit_name_map, load_hf_vit_state_dict, vision_transformer
from attnlab.models.lm import count_parameters
from attnlab.models.vit import (
    ConvStem,
    LinearPatchEmbedding,
    PatchEmbedding,
    VisionTransformer,
    attention_rollout,
    auto_patch_kernel,
    auto_patch_size,
    sinusoidal_2d_table,
)
from attnlab.utils.config import CONF_DIR

SIZES = {"d_model": 32, "num_heads": 4, "num_layers": 2, "d_ff": 64}


def _vit(**overrides) -> VisionTransformer:
    return VisionTransformer(**{"num_classes": 10, **SIZES, **overrides}).eval()


@pytest.mark.parametrize(
    ("image_size", "patch_size", "channels"), [(28, 4, 1), (28, 7, 1), (32, 8, 3), (32, 32, 3)]
)
def test_patch_count_and_shapes(image_size: int, patch_size: int, channels: int) -> None:
    model = _vit(image_size=image_size, patch_size=patch_size, channels=channels)
    patches = (image_size // patch_size) ** 2
    images = torch.randn(3, channels, image_size, image_size)
    assert model.patch_embedding.num_patches == patches
    assert model.patch_embedding(images).shape == (3, patches, 32)
    assert model.embed(images).shape == (3, 1 + patches, 32)
    assert model.encode(images).shape == (3, 1 + patches, 32)
    assert model(images).shape == (3, 10)
    maps = model.attention_maps(images)
    assert len(maps) == 2
    assert all(m.shape == (3, 4, 1 + patches, 1 + patches) for m in maps)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 4, 1 + patches))
    grid = image_size // patch_size
    assert model.rollout(images).shape == (3, grid, grid)


def test_patches_are_row_major() -> None:
    """Token i covers patch (i // grid, i % grid): a blob in one patch lights up that token."""
    embedding = PatchEmbedding(image_size=12, patch_size=4, channels=1, d_model=8)
    nn.init.ones_(embedding.projection.weight)
    nn.init.zeros_(embedding.projection.bias)
    images = torch.zeros(1, 1, 12, 12)
    images[0, 0, 4:8, 8:12] = 1.0  # patch row 1, column 2
    tokens = embedding(images)[0, :, 0]
    assert tokens.nonzero().flatten().tolist() == [1 * 3 + 2]


def test_cls_token_is_at_position_zero() -> None:
    model = _vit(image_size=28, patch_size=7, dropout=0.0)
    images = torch.randn(2, 1, 28, 28)
    tokens = model.embed(images)
    cls = model.cls_token[0, 0] + model.position_embeddings[0, 0]
    torch.testing.assert_close(tokens[:, 0], cls.expand(2, -1))
    patches = model.patch_embedding(images) + model.position_embeddings[:, 1:]
    torch.testing.assert_close(tokens[:, 1:], patches)
    # the head reads the final state at position 0
    torch.testing.assert_close(model(images), model.head(model.encode(images)[:, 0]))


def test_mean_pooling_classifies_the_mean_of_the_patch_tokens() -> None:
    model = _vit(image_size=28, patch_size=7, pooling="mean")
    images = torch.randn(2, 1, 28, 28)
    expected = model.head(model.encode(images)[:, 1:].mean(1))
    torch.testing.assert_close(model(images), expected)


def test_conv_patch_embedding_equals_unfold_and_linear() -> None:
    torch.manual_seed(0)
    conv = PatchEmbedding(image_size=32, patch_size=8, channels=3, d_model=16).double()
    linear = LinearPatchEmbedding(image_size=32, patch_size=8, channels=3, d_model=16).double()
    linear.load_conv(conv)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(linear(images), conv(images), rtol=0, atol=1e-12)


def test_an_overlapping_patch_window_is_centred_on_its_patch() -> None:
    """patch_kernel = patch + 2k: the same grid of tokens, each reading its patch and k pixels
    around it (zeros past the border). Kernel weights nonzero only on the central patch give the
    plain patch embedding exactly; a window's ring reaches the neighbouring patches."""
    torch.manual_seed(0)
    plain = PatchEmbedding(image_size=12, patch_size=4, channels=2, d_model=8).double()
    wide = PatchEmbedding(12, 4, 2, 8, kernel_size=8).double()
    assert wide.num_patches == plain.num_patches == 9
    with torch.no_grad():
        wide.projection.weight.zero_()
        wide.projection.weight[..., 2:6, 2:6] = plain.projection.weight
        wide.projection.bias.copy_(plain.projection.bias)
    images = torch.randn(3, 2, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(wide(images), plain(images), rtol=0, atol=1e-12)
    nn.init.ones_(wide.projection.weight)
    nn.init.zeros_(wide.projection.bias)
    blob = torch.zeros(1, 2, 12, 12, dtype=torch.float64)
    blob[0, :, 4, 4] = 1.0  # the corner pixel of patch (1, 1): within 2 pixels of 4 patches
    assert wide(blob)[0, :, 0].nonzero().flatten().tolist() == [0, 1, 3, 4]
    model = _vit(image_size=28, patch_size=4, patch_kernel=6)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_the_conv_stem_gives_the_patch_grid_from_local_pixels() -> None:
    """stem=conv: log2(patch) stride-2 3x3 stages reach the patch grid, so the tokens are those
    of the patches; token (0, 0) reads only the pixels within 3 of its 4x4 patch (two 3x3
    convolutions at stride 2 see 7 pixels around each output), nothing further away."""
    torch.manual_seed(0)
    stem = ConvStem(image_size=12, patch_size=4, channels=2, d_model=16).eval()
    assert stem.num_patches == 9 and len(stem.convs) == 2 * 3  # two conv-BN-ReLU stages
    images = torch.randn(3, 2, 12, 12, requires_grad=True)
    tokens = stem(images)
    assert tokens.shape == (3, 9, 16)
    tokens[0, 0].sum().backward()
    reach = images.grad[0].abs().sum(0) > 0
    assert reach[:4, :4].all() and not reach[4:].any() and not reach[:, 4:].any()
    assert images.grad[1:].abs().sum() == 0  # in eval mode BatchNorm couples no images
    model = _vit(image_size=28, patch_size=4, stem="conv")
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("image_size", "patch_size", "stem"),
    [(28, 4, ConvStem), (32, 8, ConvStem), (14, 2, PatchEmbedding), (28, 7, PatchEmbedding)],
)
def test_the_auto_stem_convolves_from_four_pixel_patches_up(
    image_size: int, patch_size: int, stem: type
) -> None:
    """stem=auto: the conv stem where the patch takes two or more stride-2 stages; the patch
    stem, with its auto window, for 1-2 pixel patches and sizes that are no power of 2."""
    model = _vit(image_size=image_size, patch_size=patch_size, stem="auto", patch_kernel="auto")
    assert type(model.patch_embedding) is stem
    assert model(torch.randn(2, 1, image_size, image_size)).shape == (2, 10)
    windowed = _vit(image_size=28, patch_size=4, stem="auto", patch_kernel=6)
    assert windowed.patch_embedding.projection.kernel_size == (6, 6)  # a window asks for patches


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patch_size": 7}, r"model.stem=conv .* patch_size must be a power of 2 \(got 7\)"),
        ({"patch_size": 1, "image_size": 8}, r"power of 2 \(got 1\)"),
        ({"stem": "resnet"}, r"model.stem='resnet' is unknown"),
        ({"patch_kernel": 6}, r"model.patch_kernel=6 is a window of the patch stem"),
    ],
)
def test_a_stem_that_cannot_reach_the_grid_is_a_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _vit(**{"image_size": 28, "stem": "conv", **overrides})


@pytest.mark.parametrize("kernel", [3, 7])
def test_a_patch_kernel_that_cannot_centre_is_a_clear_error(kernel: int) -> None:
    with pytest.raises(ValueError, match=rf"model.patch_kernel={kernel} must be patch_size \(4\)"):
        _vit(image_size=28, patch_size=4, patch_kernel=kernel)


@pytest.mark.parametrize(("image_size", "patch_size"), [(28, 5), (32, 7), (28, 0)])
def test_image_size_not_divisible_by_patch_size_is_a_clear_error(
    image_size: int, patch_size: int
) -> None:
    message = rf"image_size {image_size} is not divisible by patch_size {patch_size}"
    with pytest.raises(ValueError, match=message):
        _vit(image_size=image_size, patch_size=patch_size)


def test_images_of_another_size_or_channel_count_are_a_clear_error() -> None:
    model = _vit(image_size=28, patch_size=4, channels=1)
    for shape in [(2, 1, 32, 32), (2, 3, 28, 28), (1, 28, 28)]:
        with pytest.raises(ValueError, match=r"images must be \(batch, 1, 28, 28\)"):
            model(torch.randn(*shape))


def test_unknown_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="model.pooling='max'"):
        _vit(pooling="max")
    with pytest.raises(ValueError, match="model.positional='rope'"):
        _vit(positional="rope")


def test_sinusoidal_positions_are_fixed_2d_and_cls_gets_none() -> None:
    model = _vit(image_size=28, patch_size=7, positional="sinusoidal")
    table = model.position_embeddings[0]
    assert "position_embeddings" not in dict(model.named_parameters())
    assert torch.equal(table[0], torch.zeros(32))
    grid = sinusoidal_2d_table(4, 32).view(4, 4, 32)
    torch.testing.assert_close(table[1:].view(4, 4, 32), grid)
    # the first half depends on the row only, the second half on the column only
    assert torch.equal(grid[2, 0, :16], grid[2, 3, :16])
    assert torch.equal(grid[0, 1, 16:], grid[3, 1, 16:])
    assert not torch.equal(grid[0, 0], grid[1, 0])


def test_attention_rollout_follows_its_definition() -> None:
    torch.manual_seed(0)
    maps = [torch.randn(2, 3, 5, 5).softmax(-1) for _ in range(3)]
    eye = torch.eye(5)
    joint = [(m.mean(1) + eye) / 2 for m in maps]  # rows of A + I sum to 2
    expected = joint[2] @ joint[1] @ joint[0]
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout, expected)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))
    # one layer of uniform attention: half stays on the residual path, half spreads evenly
    uniform = [torch.full((1, 2, 4, 4), 0.25)]
    torch.testing.assert_close(attention_rollout(uniform)[0], (torch.eye(4) + 0.25) / 2)


@pytest.mark.parametrize(
    ("preset", "parameters"), [("vit_s16", 22_050_664), ("vit_b16", 86_567_656)]
)
def test_paper_presets_have_the_published_sizes(preset: str, parameters: int) -> None:
    """ViT-S/16 and ViT-B/16 for 224x224 RGB and 1000 classes: the parameter counts of timm's
    vit_small_patch16_224 and of google/vit-base-patch16-224 (without HF's unused pooler)."""
    cfg = OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml")
    base = OmegaConf.load(CONF_DIR / "model" / "vit.yaml")
    node = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "defaults"})
    node.update({"num_classes": 1000, "image_size": 224, "channels": 3})
    model = instantiate(node)
    assert model.grid_size == 14
    assert count_parameters(model) == parameters


# --- Hugging Face's ViT as the reference ---------------------------------------------------

HF_CONFIG = {
    "image_size": 28,
    "patch_size": 4,
    "num_channels": 1,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "num_labels": 10,
}


def _hf(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(**HF_CONFIG)
    model = getattr(transformers, kind)(config)
    with torch.no_grad():  # HF starts LayerNorms at (1, 0) and biases at 0: make them count
        for name, tensor in model.state_dict().items():
            if name.endswith("bias") or "layernorm" in name:
                tensor.normal_(0, 0.5).add_(1.0 if name.endswith("weight") else 0.0)
    return model.eval()


def _ours(**overrides) -> VisionTransformer:
    """Our model with the sizes of ``HF_CONFIG`` (and HF's LayerNorm eps)."""
    sizes = {"image_size": 28, "patch_size": 4, "channels": 1, "num_layers": 2, "d_ff": 64}
    return _vit(**{**sizes, "layer_norm_eps": 1e-12, **overrides})


@pytest.mark.parametrize("attn_impl", ["math", "sdpa"])
def test_matches_hf_vit_for_image_classification(attn_impl: str) -> None:
    reference = _hf("ViTForImageClassification")
    model = _ours(attn_impl=attn_impl)
    assert load_hf_vit_state_dict(model, reference.state_dict()) == []
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = reference(pixel_values=images).logits
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)


def test_matches_hf_vit_model_hidden_states() -> None:
    reference = _hf("ViTModel")
    model = _ours()
    assert load_hf_vit_state_dict(model, reference.state_dict()) == ["head.weight", "head.bias"]
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = reference(pixel_values=images).last_hidden_state
        torch.testing.assert_close(model.encode(images), expected, rtol=0, atol=1e-5)


def test_loads_a_hf_checkpoint_file(tmp_path) -> None:
    """Files keep HF's original names (encoder.layer.N.attention.attention.query ...)."""
    safetensors = pytest.importorskip("safetensors.torch")
    reference = _hf("ViTForImageClassification")
    reference.save_pretrained(tmp_path)
    state = safetensors.load_file(tmp_path / "model.safetensors")
    names = hf_vit_name_map(2, "checkpoint").values()
    assert set(state) == {n if n.startswith("classifier.") else f"vit.{n}" for n in names}
    model = _ours()
    assert load_hf_vit_state_dict(model, state) == []
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        expected = reference(pixel_values=images).logits
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)


def test_name_map_covers_every_parameter_once() -> None:
    parameters = set(_ours().state_dict())
    for layout in ("checkpoint", "modules"):
        names = hf_vit_name_map(2, layout)
        assert set(names) == parameters
        assert len(set(names.values())) == len(names)


def test_hf_weights_that_do_not_fit_are_named() -> None:
    state = _hf("ViTForImageClassification").state_dict()
    with pytest.raises(ValueError, match=r"'layers\.0\.mlp\.fc1\.weight' is \(64, 32\) but"):
        load_hf_vit_state_dict(_ours(d_ff=128), state)
    with pytest.raises(ValueError, match="is it a ViT with 3 layers"):
        load_hf_vit_state_dict(_ours(num_layers=3), state)
    with pytest.raises(ValueError, match="positional='learned'"):
        load_hf_vit_state_dict(_ours(positional="sinusoidal"), state)


def test_the_cls_only_last_layer_gives_the_full_layers_logits_and_gradients() -> None:
    torch.manual_seed(0)
    fast = _vit(image_size=28, patch_size=7, dropout=0.0).double().train()
    full = _vit(image_size=28, patch_size=7, dropout=0.0, last_layer_cls_only=False).double()
    full.load_state_dict(fast.state_dict())
    images = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    labels = torch.tensor([1, 4, 7])
    losses = [nn.functional.cross_entropy(m(images), labels) for m in (fast, full)]
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-12)
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(fast.named_parameters(), full.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12, msg=name)


def test_model_pretrained_loads_a_hf_vit_directory_from_config(tmp_path, compose) -> None:
    """``experiment=vit model.pretrained=DIR``: the sizes and weights of a HF ViT directory, a
    new head for the data's classes when its label set differs."""
    pytest.importorskip("safetensors")
    reference = _hf("ViTForImageClassification")
    reference.save_pretrained(tmp_path / "hf_vit")
    cfg = compose(["experiment=vit", f"model.pretrained={tmp_path / 'hf_vit'}", "debug=fdr"])
    _, task = pipeline.build(cfg)
    model = task.net
    assert len(model.encoder.layers) == 2 and model.cls_token.shape[-1] == 32  # from config.json
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        expected = reference.vit(pixel_values=images).last_hidden_state
        torch.testing.assert_close(model.eval().encode(images), expected, rtol=0, atol=1e-5)
    same_classes = vision_transformer(10, pretrained=str(tmp_path / "hf_vit"), channels=1)
    torch.testing.assert_close(same_classes.head.weight, reference.classifier.weight)
    with pytest.raises(ConfigError, match=r"takes image_size=28 but the data gives 32.*resize"):
        vision_transformer(10, pretrained=str(tmp_path / "hf_vit"), image_size=32)
    wide = vision_transformer(10, pretrained=str(tmp_path / "hf_vit"), patch_kernel=8)
    assert wide.patch_embedding.projection.kernel_size == (4, 4)  # HF's patches, not overlapping
    conv = vision_transformer(10, pretrained=str(tmp_path / "hf_vit"), stem="conv")
    assert isinstance(conv.patch_embedding, PatchEmbedding)  # HF's weights are a patch map


def test_auto_patch_size_gives_a_grid_near_seven_at_any_image_size() -> None:
    sizes = {size: auto_patch_size(size) for size in (8, 14, 28, 32, 224)}
    assert sizes == {8: 1, 14: 2, 28: 4, 32: 4, 224: 32}
    model = VisionTransformer(10, image_size=14, patch_size="auto", channels=1)
    assert model.grid_size == 7 and model(torch.randn(2, 1, 14, 14)).shape == (2, 10)
    with pytest.raises(ValueError, match="model.patch_size='big': give a number of pixels or auto"):
        VisionTransformer(10, image_size=14, patch_size="big")


def test_auto_patch_kernel_widens_only_patches_of_one_or_two_pixels() -> None:
    """patch_kernel=auto: the paper's patch from 4 pixels up, a window 3 patches wide below."""
    assert {p: auto_patch_kernel(p) for p in (1, 2, 4, 7, 16)} == {1: 3, 2: 6, 4: 4, 7: 7, 16: 16}
    for image_size, kernel in [(14, 6), (28, 4), (8, 3)]:
        model = VisionTransformer(10, image_size=image_size, patch_size="auto", patch_kernel="auto")
        assert model.patch_embedding.projection.kernel_size == (kernel, kernel)
        assert model.grid_size == image_size // auto_patch_size(image_size)
    with pytest.raises(ValueError, match="model.patch_kernel='wide': give a number of pixels"):
        VisionTransformer(10, image_size=14, patch_size="auto", patch_kernel="wide")
