"""Capture overhead: plain denoising vs denoising under a full AttributionCapture, same model and inputs, one process.

Two conditionings: one reference token (PBE / DCI-VTON / StableVITON UNet: R2G only, G2R is degenerate) and 1,036
spatial tokens on a 37x28 grid (the custom model: R2G + G2R on every layer + SRAM on decoder layer 2). Each is run at
N and 2N steps to show the capture's memory does not grow with the steps.

  python benchmarks/capture_overhead.py                 # tiny UNet, CPU
  python benchmarks/capture_overhead.py --size sd15 --steps 3 --repeats 1    # SD-1.5-size UNet, random weights
  python benchmarks/capture_overhead.py --size sd15 --device cuda --dtype fp16 --steps 50
Targets at SD-1.5 size: <= 1.10x plain with one token; <= 1.25x with 1,036 tokens, G2R and SRAM on.
"""
from __future__ import annotations

import argparse
import logging
import time

import torch
from diffusers import UNet2DConditionModel

from i2am.engine import AttributionCapture, CaptureConfig

SIZES = {
    "tiny": dict(block_out_channels=(32, 32, 64, 64), cross_attention_dim=32, attention_head_dim=8,
                 norm_num_groups=8, latent=(16, 12)),
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 norm_num_groups=32, latent=(64, 48)),
}
SRAM_LAYER = "up_blocks.1.attentions.1.transformer_blocks.0.attn2"   # decoder cross-attention layer 2 (16x12)


def build(size: str, device, dtype):
    spec = dict(SIZES[size])
    latent = spec.pop("latent")
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, layers_per_block=2,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, **spec)
    return unet.to(device=device, dtype=dtype).eval(), latent, spec["cross_attention_dim"]


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def denoise(unet, x, ctx, steps, device):
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(steps):
            unet(x, 999 - s, ctx)
    sync(device)
    return time.perf_counter() - start


def peak_bytes(fn, device):
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - base


def measure(unet, x, ctx, steps, groups, device, repeats, ref_grid, sram):
    cfg = CaptureConfig(num_steps=steps, time_groups=groups, directions=("r2g", "g2r"),
                        sram_layers=(SRAM_LAYER,) if sram else ())
    plain, captured, cap_bytes = [], [], 0
    for _ in range(repeats):   # alternate, so drifts in machine load hit both alike
        plain.append(denoise(unet, x, ctx, steps, device))
        with AttributionCapture(unet, cfg, ref_grid=ref_grid) as cap:
            captured.append(denoise(unet, x, ctx, steps, device))
        cap_bytes = cap.accumulator_bytes()
    plain_peak = peak_bytes(lambda: denoise(unet, x, ctx, steps, device), device)

    def under_capture():
        with AttributionCapture(unet, cfg, ref_grid=ref_grid):
            denoise(unet, x, ctx, steps, device)
    capture_peak = peak_bytes(under_capture, device)
    return min(plain), min(captured), cap_bytes, plain_peak, capture_peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("i2am").setLevel(logging.ERROR)  # the one-token case warns that G2R is degenerate: expected
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    torch.manual_seed(0)
    unet, latent, width = build(args.size, args.device, dtype)
    x = torch.randn(args.batch, 4, *latent, device=args.device, dtype=dtype)
    denoise(unet, x, torch.randn(args.batch, 1, width, device=args.device, dtype=dtype), 1, args.device)  # warm-up
    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "CPU"
    print(f"size={args.size} latent={latent} device={args.device} ({name}) dtype={args.dtype} batch={args.batch} "
          f"repeats={args.repeats} (best of)")
    print(f"{'conditioning':<34}{'steps':>6}{'plain s':>10}{'capture s':>11}{'ratio':>8}{'accum MiB':>11}"
          f"{'extra peak MiB':>16}")
    cases = [("1 token (R2G; G2R degenerate)", 1, None, False),
             ("1036 tokens 37x28 (R2G+G2R+SRAM)", 1036, (37, 28), True)]
    for label, tokens, grid, sram in cases:
        ctx = torch.randn(args.batch, tokens, width, device=args.device, dtype=dtype)
        for steps in (args.steps, 2 * args.steps):
            plain, captured, nbytes, p_peak, c_peak = measure(unet, x, ctx, steps, min(5, args.steps), args.device,
                                                              args.repeats, grid, sram)
            extra = "n/a (CPU)" if p_peak is None else f"{(c_peak - p_peak) / 2**20:.1f}"
            print(f"{label:<34}{steps:>6}{plain:>10.3f}{captured:>11.3f}{captured / plain:>7.3f}x"
                  f"{nbytes / 2**20:>11.2f}{extra:>16}")


if __name__ == "__main__":
    main()
