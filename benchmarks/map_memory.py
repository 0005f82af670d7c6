"""Map memory at real sizes, measured small and extrapolated: i2am's accumulators vs attention-map-diffusers' stored
q/k (image->text, every step), one tool per process (benchmarks/peers.py runs it with --memory).

FLUX.1 Kontext, a 1024x1024 edit with one reference, 28 steps: 512 text + 4096 generated + 4096 reference tokens at
the real sequence length, but 2 heads instead of 24 and (1 double + 1 single) or (2 double + 2 single) blocks, for 1
or 2 steps. Both tools keep per-head tensors, so bytes are linear in the heads:
  i2am  bytes = blocks x heads x b                (fixed: allocated for all 5 time groups at the first step)
  amd   bytes = steps x double blocks x heads x b (q/k of each step; it records nothing in single-stream blocks)
b is fitted on the smallest run and the formula checked against the others; FLUX.1 has 19 + 38 blocks and 24 heads.
SD-1.5, 512x512 (64x64 latent), CFG, 77 text tokens, 50 steps: the whole UNet for 1 and 2 steps;
  i2am  fixed; amd  bytes = steps x b.

  python benchmarks/map_memory.py --tool i2am          # then .venv-peers/bin/python ... --tool amd
"""
from __future__ import annotations

import argparse
import json
import logging

import torch
from _harness import pin_threads
from _models import flux, flux_inputs, flux_steps, unet, unet_inputs, unet_steps

KONTEXT = dict(text=512, grid=64, heads=2, steps=28, real_heads=24, real_double=19, real_single=38)
FLUX_RUNS = [(1, 1, 1), (2, 2, 1), (2, 2, 2)]      # (double, single, steps)
SD15_STEPS = 50


def i2am_flux(model, x, steps, **kw) -> int:
    from i2am.engine import CaptureConfig
    from i2am.engine.joint import JointAttentionCapture
    cap = JointAttentionCapture(model, CaptureConfig(num_steps=KONTEXT["steps"], time_groups=5), **kw)
    with cap:
        flux_steps(model, x, steps)
    return cap.accumulator_bytes()


def amd_bytes(pipe, steps_fn) -> int:
    from attention_map_diffusers import AttentionCapture
    cap = AttentionCapture(pipe, relations="image->text", timesteps="all", max_capture_bytes=None)
    with cap:
        steps_fn()
    return cap.collector.peak_capture_bytes


def flux_pipe(model):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=model)


def sd_pipe(model):
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline(vae=None, text_encoder=None, tokenizer=None, unet=model, scheduler=None,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def measure(tool: str) -> dict:
    runs = []
    for double, single, steps in FLUX_RUNS:
        model, s = flux("cpu", layers=double, single=single, heads=KONTEXT["heads"], text=KONTEXT["text"],
                        grid=KONTEXT["grid"])
        x = flux_inputs(model, s, reference=True)
        if tool == "i2am":
            row = dict(all=i2am_flux(model, x, steps),
                       one=i2am_flux(model, x, steps, relations=("image:reference",), normalisations=("i2am",)))
        else:
            row = dict(all=amd_bytes(flux_pipe(model), lambda m=model, x=x, n=steps: flux_steps(m, x, n)))
        runs.append(dict(double=double, single=single, steps=steps, **row))
    sd = []
    model = unet("sd15", sample_size=64)
    x, ctx = unet_inputs(model, (64, 64))
    for steps in (1, 2):
        if tool == "i2am":
            from i2am.engine import AttributionCapture, CaptureConfig
            cfg = CaptureConfig(num_steps=SD15_STEPS, time_groups=5, cfg_layout="uncond_cond")
            with AttributionCapture(model, cfg, ref_grid=(1, ctx.shape[1])) as cap:
                unet_steps(model, x, ctx, steps)
            sd.append(dict(steps=steps, all=cap.accumulator_bytes()))
        else:
            sd.append(dict(steps=steps, all=amd_bytes(sd_pipe(model), lambda n=steps: unet_steps(model, x, ctx, n))))
    return dict(tool=tool, flux=runs, sd15=sd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", choices=("i2am", "amd"), required=True)
    ap.add_argument("--out", default=None, help="JSON file to write")
    args = ap.parse_args()
    logging.getLogger("i2am").setLevel(logging.ERROR)
    pin_threads()
    torch.set_grad_enabled(False)
    result = measure(args.tool)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
