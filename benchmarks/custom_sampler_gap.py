"""How far the custom model's own DDIM ends from the LDM DDIM i2am used before (docs/sampling.md).

A random-weight custom-tiny model, two samples, the same start latent: the relative L2 gap of the final latents
after N steps, without and with the per-step paste. Prints figures only (no threshold).

    .venv/bin/python benchmarks/custom_sampler_gap.py --steps 4 10 50
"""
from __future__ import annotations

import argparse

import torch

from i2am.adapters import create_model
from i2am.sampling.sampler import Sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10, 50])
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    model = create_model("custom-tiny")
    with torch.no_grad():
        for p in model.unet.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    batch = {k: torch.rand(2, 3, 128, 96, generator=g) * 2 - 1 for k in ("image", "agnostic", "densepose", "reference")}
    batch["inpaint_mask"] = torch.zeros(2, 1, 128, 96)
    batch["inpaint_mask"][:, :, 32:96, 24:72] = 1
    batch["sample_id"] = ["a", "b"]
    inputs = model.prepare(batch)
    rel = lambda a, b: float((a - b).norm() / b.norm())
    print("steps | LDM DDIM vs custom DDIM (no paste) | vs custom DDIM (paste)")
    for steps in args.steps:
        ldm = Sampler(scheduler="ddim", num_steps=steps)(model, inputs)
        own = Sampler(scheduler="custom_ddim", num_steps=steps, paste=False)(model, inputs)
        pasted = Sampler(scheduler="custom_ddim", num_steps=steps, paste=True)(model, inputs)
        print(f"{steps:5d} | {rel(ldm, own):.3f} | {rel(ldm, pasted):.3f}")


if __name__ == "__main__":
    main()
