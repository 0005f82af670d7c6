"""Cost of the attention losses: one training step of the custom model with and without CWG/TV/DCML.

Three modes on the same model and batch, every batch conditional (p_uncond = 0, so the losses always act):
  mse          MSE on eps only, no attention read (plain training)
  diagnostics  MSE + the loss layer's entropy / max probability, without gradient (stage "custom" as logged)
  paper        MSE + CWG + TV + DCML on decoder layer 2 with gradients (stage "refined")
A step is: VAE latents, reference tokens, UNet forward, losses, backward, optimizer step.

  python benchmarks/train_step.py                                   # custom-tiny, 128x96, CPU
  python benchmarks/train_step.py --size sd15 --steps 2 --warmup 1 --optimizer sgd    # CPU: full UNet, 512x384
  python benchmarks/train_step.py --size sd15 --device cuda --precision bf16 --batch 8
"sd15" is the custom model at full UNet size (17 input channels, 8 heads, cross-attention width 768) with random
weights, the tiny VAE, and a tiny stand-in reference encoder producing 1,036 tokens (37x28), so that the loss layer
has the paper's 16x12 queries x 1,036 keys. Target: paper / mse <= 1.20x. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from functools import partial

import torch
from torch import nn

from i2am.adapters import create_model
from i2am.adapters._components import TokenProjector, build_unet
from i2am.data import schema
from i2am.training.tryon import TryOnTraining

IMAGE_SIZES = {"tiny": (128, 96), "sd15": (512, 384)}
MODES = {"mse": None, "diagnostics": None, "paper": {}}
OPTIMIZERS = {"adamw": partial(torch.optim.AdamW, lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-2),
              "sgd": partial(torch.optim.SGD, lr=1e-5)}   # sgd: no optimizer state (CPU memory at sd15 size)


def sd15_standin() -> nn.Module:
    """custom-tiny's VAE and DINOv2 at 512x384 with the full-size UNet; the reference is resized to 518x392, so
    the tiny encoder yields the real 37x28 = 1,036 tokens, projected to 768."""
    model = create_model("custom-tiny", image_size=IMAGE_SIZES["sd15"])
    width = model.dinov2.config.hidden_size
    model.unet = build_unet("full", in_channels=17, cross_attention_dim=768)
    model.projector = TokenProjector(width, 768, num_blocks=1)
    model.reference_size, model.token_grid = (518, 392), (37, 28)
    model.uncond_context = nn.Parameter(torch.randn(1, 37 * 28, 768))
    return model


def synthetic_batch(size: tuple[int, int], batch: int, seed: int = 0) -> dict:
    """Random images in [-1, 1] and a garment-shaped rectangle as try-on and warped-garment mask."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    image = lambda: torch.rand(batch, 3, h, w, generator=gen) * 2 - 1
    mask = torch.zeros(batch, 1, h, w)
    mask[:, :, h // 4: 3 * h // 4, w // 5: 4 * w // 5] = 1
    return {schema.IMAGE: image(), schema.REFERENCE: image(), schema.AGNOSTIC: image(), schema.DENSEPOSE: image(),
            schema.INPAINT_MASK: mask, schema.GT_WARPED_MASK: mask.clone()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(module: TryOnTraining, optimizer, batch: dict, step: int, autocast) -> float:
    device = module.model.device
    sync(device)
    start = time.perf_counter()
    with autocast():
        terms = module.compute_losses(batch, step, unconditional=False)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(IMAGE_SIZES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="autocast dtype of the forward pass (weights stay fp32, as in mixed-precision training)")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 (tiny), 1 (sd15)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adamw")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = (sd15_standin() if args.size == "sd15" else create_model("custom-tiny")).to(device)
    batch_size = args.batch or (4 if args.size == "tiny" else 1)
    batch = {k: v.to(device) for k, v in synthetic_batch(IMAGE_SIZES[args.size], batch_size).items()}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    autocast = partial(torch.autocast, device.type, dtype=dtype) if dtype else nullcontext

    print(f"size={args.size} device={args.device} precision={args.precision} batch={batch_size} "
          f"optimizer={args.optimizer} steps={args.steps} (+{args.warmup} warm-up)")
    # One shared model and optimizer; the modes take turns step by step, so drifts in machine load hit them alike.
    modules = {mode: TryOnTraining(model, paper_losses=losses, p_uncond=0.0,
                                   diagnostics_every=1 if mode == "diagnostics" else 10 ** 9)
               for mode, losses in MODES.items()}
    optimizer = OPTIMIZERS[args.optimizer](modules["mse"].trainable_parameters())
    times = {mode: [] for mode in MODES}
    for step in range(1, args.warmup + args.steps + 1):    # from step 1: "mse" never reads the attention
        for mode, module in modules.items():
            elapsed = time_step(module, optimizer, batch, step, autocast)
            if step > args.warmup:
                times[mode].append(elapsed)
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    for mode, values in times.items():
        print(f"  {mode:<12} median {medians[mode] * 1e3:9.1f} ms/step   (min {min(values) * 1e3:.1f}, "
              f"max {max(values) * 1e3:.1f})")
    print(f"ratio paper / mse: {medians['paper'] / medians['mse']:.3f}x   (target <= 1.20x)")
    print(f"ratio diagnostics / mse: {medians['diagnostics'] / medians['mse']:.3f}x")


if __name__ == "__main__":
    main()
