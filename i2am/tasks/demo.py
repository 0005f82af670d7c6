"""`i2am demo`: the smallest real end-to-end attribution — a tiny diffusers UNet conditioned on the patch tokens of
a procedurally drawn reference image, DDIM sampling under AttributionCapture, raw maps and figures in the run dir.

The UNet is randomly initialised (no weights are downloaded), so the maps show the engine working end to end, not what
a trained model attends to.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm

from i2am.attribution import AttributionCapture, CaptureConfig
from i2am.attribution.render import to_image
from i2am.report.figures import save_panel

log = logging.getLogger(__name__)


def tiny_unet(cross_dim: int = 32) -> UNet2DConditionModel:
    """SD's 4-level layout at toy width: 15 cross-attention layers outside the mid block, 8 heads."""
    return UNet2DConditionModel(
        in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=8)


def striped_reference(size: tuple[int, int], seed: int) -> np.ndarray:
    """A garment-like reference: diagonal stripes in two random colours, [H, W, 3] float in [0, 1]."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = (((yy + xx) // max(2, h // 8)) % 2).astype(np.float32)[..., None]
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return stripes * a + (1 - stripes) * b


def patch_tokens(image: np.ndarray, grid: tuple[int, int], dim: int, seed: int) -> torch.Tensor:
    """Mean colour of each grid cell through a fixed random projection, plus 2-D sinusoidal position codes."""
    gh, gw = grid
    h, w, _ = image.shape
    cells = image[: h // gh * gh, : w // gw * gw].reshape(gh, h // gh, gw, w // gw, 3).mean((1, 3))
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(3, dim // 2, generator=gen)
    colour = torch.from_numpy(cells.reshape(-1, 3)).float() @ proj
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    freqs = torch.arange(dim // 8) + 1.0
    pos = torch.cat([torch.sin(rows.flatten()[:, None] * freqs * math.pi / gh),
                     torch.cos(rows.flatten()[:, None] * freqs * math.pi / gh),
                     torch.sin(cols.flatten()[:, None] * freqs * math.pi / gw),
                     torch.cos(cols.flatten()[:, None] * freqs * math.pi / gw)], dim=1)
    return torch.cat([colour, pos], dim=1)


def run(cfg: DictConfig) -> dict:
    out_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.paths.output_dir)
    torch.manual_seed(cfg.seed)
    batch, (height, width) = cfg.demo.batch_size, tuple(cfg.demo.image_size)
    ref_grid = tuple(cfg.demo.ref_grid)
    unet = tiny_unet().eval()
    refs = [striped_reference((height, width), cfg.seed + i) for i in range(batch)]
    context = torch.stack([patch_tokens(r, ref_grid, 32, cfg.seed) for r in refs])
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(cfg.sampler.num_steps)
    capture_cfg = CaptureConfig(num_steps=cfg.sampler.num_steps, time_groups=cfg.capture.time_groups,
                                directions=tuple(cfg.capture.directions),
                                sram_layers=("up_blocks.1.attentions.1.transformer_blocks.0.attn2",))
    latents = torch.randn(batch, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(cfg.seed))
    with torch.no_grad(), AttributionCapture(unet, capture_cfg, ref_grid=ref_grid, model_name="demo-tiny-unet") as cap:
        for t in tqdm(scheduler.timesteps, desc="DDIM under capture"):
            eps = unet(latents, t, context).sample
            latents = scheduler.step(eps, t, latents).prev_sample
    maps = cap.maps()
    maps_path = maps.save(out_dir / "maps" / "demo.safetensors")
    figures = []
    for i, ref in enumerate(refs):
        ref_u8 = (ref * 255).round().astype(np.uint8)
        r2g = to_image(maps.r2g.ulam[i], (height, width), "r2g", preset="clean")
        g2r = to_image(maps.g2r.ulam[i], (height, width), "g2r", preset="clean")
        tiles = [("reference", ref_u8), ("R2G ULAM", r2g.numpy()), ("G2R ULAM", g2r.numpy())]
        tiles += [(f"R2G TLAM {g}", to_image(m, (height, width), "r2g", "clean").numpy())
                  for g, m in enumerate(maps.r2g.tlam[i])]
        figures.append(save_panel(out_dir / "figures" / f"sample{i}.png", tiles, title="untrained tiny UNet"))
    metrics = {"n_samples": batch, "steps": cap.steps_seen, "layers": len(cap.layers),
               "accumulator_bytes": cap.accumulator_bytes()}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info("maps: %s; figures: %s", maps_path, [str(f) for f in figures])
    return metrics
