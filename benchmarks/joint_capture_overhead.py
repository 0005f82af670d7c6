"""Joint-attention capture overhead on a FLUX-like transformer: plain denoising steps vs steps under
``JointAttentionCapture``, same model and inputs, one process; then (optionally) vs attention-map-diffusers 1.0 on
the image->text relation both tools support.

Shapes (tokens: text + generated + one reference, as FLUX.1 Kontext packs a 1024x1024 edit at size "flux1"):
  cpu    2 double + 4 single blocks, 4 heads x 128, 64 text + 32x32 generated + 32x32 reference tokens
  flux1  19 double + 38 single blocks, 24 heads x 128, 512 text + 64x64 generated + 64x64 reference tokens

  python benchmarks/joint_capture_overhead.py                       # CPU, random weights
  python benchmarks/joint_capture_overhead.py --size flux1 --device cuda --dtype bf16 --steps 4
  python benchmarks/joint_capture_overhead.py --amd                 # + attention-map-diffusers (optional extra)
Target: capture of one relation <= 1.25x plain.
"""
from __future__ import annotations

import argparse
import time

import torch
from diffusers import FluxTransformer2DModel
from tqdm import tqdm

from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture

SIZES = {
    "cpu": dict(layers=2, single=4, heads=4, text=64, grid=32),
    "flux1": dict(layers=19, single=38, heads=24, text=512, grid=64),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build(size: str, device, dtype):
    s = SIZES[size]
    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=s["layers"],
                                   num_single_layers=s["single"], attention_head_dim=128,
                                   num_attention_heads=s["heads"], joint_attention_dim=4096 if size == "flux1" else 256,
                                   pooled_projection_dim=768 if size == "flux1" else 64, guidance_embeds=True,
                                   axes_dims_rope=[16, 56, 56])
    return model.to(device=device, dtype=dtype).eval(), s


def inputs(model, s, device, dtype):
    g = s["grid"]
    gen = torch.cartesian_prod(torch.zeros(1), torch.arange(float(g)), torch.arange(float(g)))
    ref = torch.cartesian_prod(torch.ones(1), torch.arange(float(g)), torch.arange(float(g)))
    cfg = model.config
    return dict(hidden_states=torch.randn(1, 2 * g * g, cfg.in_channels, device=device, dtype=dtype),
                encoder_hidden_states=torch.randn(1, s["text"], cfg.joint_attention_dim, device=device, dtype=dtype),
                pooled_projections=torch.randn(1, cfg.pooled_projection_dim, device=device, dtype=dtype),
                img_ids=torch.cat([gen, ref]).to(device), txt_ids=torch.zeros(s["text"], 3, device=device),
                guidance=torch.full((1,), 3.5, device=device), return_dict=False)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_steps(model, x, steps, device) -> float:
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for i in tqdm(range(steps), leave=False):
            model(**x, timestep=torch.full((1,), 1.0 - i / steps, device=device))
    sync(device)
    return time.perf_counter() - start


def median(values):
    return sorted(values)[len(values) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=DTYPES, default="fp32")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--amd", action="store_true", help="also time attention-map-diffusers 1.0 (image->text)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    dtype = DTYPES[args.dtype]
    model, s = build(args.size, args.device, dtype)
    x = inputs(model, s, args.device, dtype)
    length = s["text"] + 2 * s["grid"] ** 2
    print(f"size={args.size} device={args.device} dtype={args.dtype} blocks={s['layers']}+{s['single']} "
          f"heads={s['heads']}x128 tokens={length} (text {s['text']}, generated {s['grid']}^2, reference "
          f"{s['grid']}^2) steps={args.steps}")
    run_steps(model, x, 1, args.device)   # warm-up

    variants = {
        "i2am, image:reference": dict(relations=("image:reference",), normalisations=("i2am",)),
        "i2am, text": dict(relations=("text",), normalisations=("i2am",)),
        "share, image:reference": dict(relations=("image:reference",), normalisations=("share",)),
        "all relations, both normalisations": {},
    }
    # plain and captured runs alternate, and each ratio is taken within a pair, so drifting machine load cancels
    plains, results = [], {name: ([], []) for name in variants}
    for _ in range(args.repeats):
        for name, kw in variants.items():
            plain = run_steps(model, x, args.steps, args.device)
            cap = JointAttentionCapture(model, CaptureConfig(num_steps=2 * args.steps, time_groups=1), **kw)
            with cap:
                t = run_steps(model, x, args.steps, args.device)
                size = cap.accumulator_bytes()
                if name == next(iter(variants)) and not plains:   # memory: N more steps, same accumulators
                    run_steps(model, x, args.steps, args.device)
                    print(f"accumulators of {name!r}: {size / 2**20:.2f} MiB after {args.steps} steps, "
                          f"{cap.accumulator_bytes() / 2**20:.2f} MiB after {2 * args.steps}")
            plains.append(plain)
            results[name][0].append(t / plain)
            results[name][1].append(size)
    plain = median(plains)
    print(f"{'plain':40s} {plain / args.steps * 1e3:9.1f} ms/step (median)")
    for name, (ratios, sizes) in results.items():
        print(f"{name:40s} {median(ratios):5.2f}x plain (median of {len(ratios)} paired runs; "
              f"{min(ratios):.2f}-{max(ratios):.2f})  accumulators {sizes[0] / 2**20:.2f} MiB")
    if args.amd:
        amd_compare(model, x, args, plain)


def amd_compare(model, x, args, plain):
    try:
        from attention_map_diffusers import AttentionCapture
    except ImportError as err:
        print(f"attention-map-diffusers: not installed ({err}); pip install --no-deps attention-map-diffusers==1.0.0")
        return
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=model)
    times, stored = [], 0
    for _ in range(args.repeats):
        cap = AttentionCapture(pipe, relations="image->text", timesteps="all")
        with cap:
            t = run_steps(model, x, args.steps, args.device)
            sync(args.device)
            start = time.perf_counter()
            maps = cap.compute()
            sync(args.device)
            t += time.perf_counter() - start
        stored = cap.collector.peak_capture_bytes
        times.append(t)
        del maps
    t = median(times)
    print(f"{'attention-map-diffusers 1.0, image->text':40s} {t / args.steps * 1e3:9.1f} ms/step  "
          f"{t / plain:5.2f}x plain  (stores q/k: peak {stored / 2**20:.1f} MiB for {args.steps} steps)")


if __name__ == "__main__":
    main()
