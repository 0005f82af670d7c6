"""i2am.trace vs plain sampling vs attention-map-diffusers 1.0 on one StableDiffusionPipeline, same inputs, one process.

The pipeline has an SD-1.5-size UNet (random weights, built from config; prompt embeddings passed directly) with CFG;
the relation both tools support is generated <-> text (attention-map-diffusers: "image->text", maps of every step;
i2am: the "text" relation, G2R alone and R2G + G2R, every family). Runs alternate plain / i2am / peer per repeat, so
drifts in machine load hit all alike; the figures are paired median ratios over the repeats (benchmarks/_harness.py).
For the peers on equal work, each in its own process and venv, see benchmarks/peers.py (`make bench-peers`).

  python benchmarks/pipeline_trace.py --steps 2 --size 256          # CPU, reduced
  python benchmarks/pipeline_trace.py --device cuda --dtype fp16 --steps 50 --size 512
attention-map-diffusers is an optional peer for this benchmark only; it declares torchvision (a CUDA build of torch
on most platforms), so install it without dependencies: pip install --no-deps attention-map-diffusers==1.0.0
Targets (SD-1.5 size): i2am <= the peer, and <= 1.10x plain sampling for text conditioning.
"""
from __future__ import annotations

import argparse

import torch
from _harness import MIN_REPEATS, compare, interleaved, pin_threads
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

import i2am
from i2am.engine import CaptureConfig


def build(device, dtype) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)   # the SD-1.5 UNet layout
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--size", type=int, default=256, help="image side (latent side = size / 8)")
    args = parser.parse_args()
    pin_threads()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    pipe = build(args.device, dtype)
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 1, 77, 768, generator=gen).to(args.device, dtype)
    call = dict(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], num_inference_steps=args.steps,
                height=args.size, width=args.size, guidance_scale=7.5, output_type="latent")

    def plain():
        pipe(**call, generator=torch.Generator().manual_seed(1))

    def traced(directions):
        def run():
            with i2am.trace(pipe, CaptureConfig(directions=directions)) as tr:
                pipe(**call, generator=torch.Generator().manual_seed(1))
            maps = tr.maps.relation("text")
            for d in directions:
                _ = getattr(maps, d).ulam   # the families are part of the cost
        return run

    try:
        from attention_map_diffusers import AttentionCapture
    except ImportError:
        AttentionCapture = None
        print("attention-map-diffusers is not installed: pip install --no-deps attention-map-diffusers==1.0.0")

    def peer():
        with AttentionCapture(pipe, relations="image->text", timesteps="all", offload=args.device) as capture:
            pipe(**call, generator=torch.Generator().manual_seed(1))
        capture.compute()

    runs = {"plain": plain, "i2am g2r": traced(("g2r",)), "i2am r2g+g2r": traced(("r2g", "g2r"))}
    if AttentionCapture is not None:
        runs["attention-map-diffusers"] = peer
    times = interleaved(runs, repeats=args.repeats, device=args.device)
    print(f"StableDiffusionPipeline, SD-1.5 UNet, {args.size}x{args.size}, CFG, {args.steps} steps, {args.device} "
          f"{args.dtype}, {args.repeats} interleaved repeats after a warm-up")
    for name, summary in compare(times, "plain").items():
        text = f"{summary.median:8.3f} s" if name == "plain" else f"{summary.ratio_text()} paired vs plain"
        print(f"  {name:<26} {text}")
    if AttentionCapture is not None:
        peer = compare(times, "attention-map-diffusers")
        for name in ("i2am g2r", "i2am r2g+g2r"):
            print(f"  {name} / attention-map-diffusers: {peer[name].ratio_text()} paired")


if __name__ == "__main__":
    main()
