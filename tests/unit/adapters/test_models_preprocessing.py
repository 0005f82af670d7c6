"""Preprocessing as each original does it, on hand-made images with values worked out from the documented operations."""
import numpy as np
import pytest
import torch
from PIL import Image

from i2am.adapters import create_model
from i2am.adapters._components import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_pixels,
    dinov2_pixels,
    resize_mask,
)


def gradient_image(h=96, w=80):
    """A smooth uint8 RGB image (so PIL's uint8 rounding is the only difference to a float resize)."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 127 + 100 * np.sin(x / 9.0) * np.cos(y / 11.0)], -1)
    return np.round(rgb).astype(np.uint8)


def to_minus1_1(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_pbe_reference_is_pil_bicubic_224_then_clip_normalisation():
    rgb = gradient_image()
    pil = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BICUBIC)).astype(np.float32) / 255  # the script
    expected = (torch.from_numpy(pil).permute(2, 0, 1)[None] - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    ours = clip_pixels(to_minus1_1(rgb), 224, "pil_bicubic")
    assert ours.shape == (1, 3, 224, 224)
    assert (ours - expected).abs().max() < 1.5 / 255 / min(CLIP_STD)     # PIL rounds to uint8


def test_tensor_bilinear_resize_has_no_antialiasing():
    """torchvision Resize on a tensor (torchvision < 0.17): bilinear at source x = 4i + 1.5 for a 4x reduction, i.e.
    the mean of pixels 4i+1 and 4i+2 only; antialiasing would spread over the whole 4-pixel cell and beyond."""
    image = torch.zeros(1, 3, 8, 8)
    image[..., 1::4, :] = 1.0                       # rows 1 and 5 bright
    out = (clip_pixels(image * 2 - 1, 2, "tensor_bilinear") * torch.tensor(CLIP_STD).view(1, 3, 1, 1)
           + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
    torch.testing.assert_close(out, torch.full((1, 3, 2, 2), 0.5))


def test_custom_dinov2_input_is_the_unnormalised_garment_at_518x392():
    model = create_model("custom", device="meta")
    assert model.reference_size == (518, 392) and model.token_grid == (37, 28)
    garment = torch.full((1, 3, 512, 384), 0.3)
    torch.testing.assert_close(dinov2_pixels(garment, (518, 392)), torch.full((1, 3, 518, 392), 0.3))
    imagenet = dinov2_pixels(garment, (518, 392), "imagenet")
    expected = (0.65 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(imagenet[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="normalisation"):
        dinov2_pixels(garment, (518, 392), "clip")


def test_mask_to_latent_grid_per_original():
    mask = torch.zeros(1, 1, 128, 96)
    mask[:, :, 3::8, :] = 1                          # one pixel row of every 8-row cell
    # PBE / DCI-VTON / StableVITON: bilinear without antialiasing samples rows 8i+3 and 8i+4 -> 0.5
    torch.testing.assert_close(resize_mask(mask, (16, 12), "bilinear"), torch.full((1, 1, 16, 12), 0.5))
    # the custom model: F.interpolate(mode="nearest") picks row 8i -> 0
    assert resize_mask(mask, (16, 12), "nearest").abs().max() == 0
    mask[:, :, 8:16, :] = 1
    nearest = resize_mask(mask, (16, 12), "nearest")
    assert nearest[0, 0, :, 0].tolist() == [0.0, 1.0] + [0.0] * 14


@pytest.mark.parametrize("name,reference,mask", [("pbe-tiny", "pil_bicubic", "bilinear"),
                                                 ("dcivton-tiny", "tensor_bilinear", "bilinear"),
                                                 ("stableviton-tiny", "tensor_bilinear", "bilinear"),
                                                 ("custom-tiny", "none", "nearest")])
def test_adapter_preprocessing_defaults(name, reference, mask):
    model = create_model(name)
    assert getattr(model, "reference_resize", getattr(model, "reference_normalisation", None)) == reference
    assert model.mask_resize == mask


def test_vae_posterior_mode_or_seeded_sample():
    batch = {"image": torch.rand(2, 3, 128, 96) * 2 - 1, "agnostic": torch.rand(2, 3, 128, 96) * 2 - 1,
             "densepose": torch.rand(2, 3, 128, 96) * 2 - 1, "reference": torch.rand(2, 3, 128, 96) * 2 - 1,
             "inpaint_mask": torch.ones(2, 1, 128, 96), "sample_id": ["a", "b"]}
    vae = {"block_out_channels": [16, 32, 64, 64]}   # a non-preset VAE keeps random weights: a wide posterior
    mode = create_model("custom-tiny", vae={**vae, "norm_num_groups": 8})
    sampled = create_model("custom-tiny", vae={**vae, "norm_num_groups": 8}, latent_encoding="sample")
    sampled.load_state_dict(mode.state_dict())
    images = batch["image"]
    posterior = mode.vae.encode(images).latent_dist
    torch.testing.assert_close(mode.encode_images(images), posterior.mode() * mode.latent_scale)
    first = sampled.encode_images(images, ["a", "b"], "image")
    assert torch.equal(first, sampled.encode_images(images, ["a", "b"], "image"))           # seeded
    torch.testing.assert_close(first[1], sampled.encode_images(images[1:], ["b"], "image")[0])   # per sample
    assert not torch.equal(first, sampled.encode_images(images, ["a", "b"], "agnostic"))   # per role
    noise = (first / mode.latent_scale - posterior.mean) / posterior.std
    assert 0.7 < noise.std() < 1.3
    with pytest.raises(ValueError, match="latent_encoding"):
        create_model("pbe-tiny", latent_encoding="mean")
