"""The fixed weights of the tiny presets' frozen parts (i2am.adapters._toy_init): they must keep their inputs."""
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from i2am.adapters import create_model
from i2am.adapters._components import build_dinov2, build_vae, component_config
from i2am.adapters._toy_init import block_average_autoencoder_


def test_tiny_vae_is_the_exact_block_mean_autoencoder():
    vae = build_vae("tiny").eval()
    images = torch.rand(2, 3, 128, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor
        decoded = vae.decode(latents / vae.config.scaling_factor).sample
    block_means = F.avg_pool2d(images, 8)
    assert latents.shape == (2, 4, 16, 12)
    torch.testing.assert_close(latents[:, :3], block_means, atol=1e-5, rtol=0)
    assert latents[:, 3].abs().max() == 0
    torch.testing.assert_close(decoded, F.interpolate(block_means, scale_factor=8, mode="nearest"), atol=1e-5, rtol=0)


def test_adapter_latents_keep_the_densepose_coordinates():
    """Why the construction exists: a random tiny VAE kept nothing of the UV input; this one keeps its block mean."""
    model = create_model("custom-tiny")
    uv = torch.linspace(-1, 1, 96).expand(1, 3, 128, 96).clone()
    uv[:, 1] = torch.linspace(-1, 1, 128)[:, None]
    with torch.no_grad():
        latents = model.encode_images(uv)
    torch.testing.assert_close(latents[:, :3], F.avg_pool2d(uv, 8), atol=1e-5, rtol=0)


def test_block_average_autoencoder_rejects_layouts_it_cannot_pass():
    config = {**component_config("vae", "tiny"), "norm_num_groups": 8}   # 2 channels a group in the last decoder block
    with pytest.raises(ValueError, match="norm_num_groups"):
        block_average_autoencoder_(AutoencoderKL(**config))


def test_tiny_dinov2_tokens_carry_their_cell():
    """Identical patches at different cells give different tokens, and a linear probe reads the cell back."""
    dinov2 = build_dinov2("tiny").eval()
    grey = torch.zeros(1, 3, 112, 84)
    with torch.no_grad():
        tokens = dinov2(pixel_values=grey).last_hidden_state[0, 1:]          # [48, D], 8x6 grid
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(6.0), indexing="ij")
    cells = torch.stack([rows.flatten(), cols.flatten()], dim=-1)
    features = torch.cat([tokens, torch.ones(48, 1)], dim=-1)
    fit = torch.linalg.lstsq(features, cells).solution
    residual = cells - features @ fit
    r2 = 1 - residual.var(dim=0) / cells.var(dim=0)
    assert r2.min() > 0.95
    assert torch.cdist(tokens, tokens).fill_diagonal_(float("inf")).min() > 1e-2
