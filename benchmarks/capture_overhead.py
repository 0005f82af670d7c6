"""Capture overhead: plain denoising vs denoising under a full AttributionCapture, same model and inputs, one process.

Two conditionings: one reference token (PBE / DCI-VTON / StableVITON UNet: R2G only, G2R is degenerate) and 1,036
spatial tokens on a 37x28 grid (the custom model: R2G + G2R on every layer + SRAM on decoder layer 2). Each is run at
N and 2N steps to show the capture's memory does not grow with the steps.

  python benchmarks/capture_overhead.py                 # tiny UNet, CPU
  python benchmarks/capture_overhead.py --size sd15 --steps 2    # SD-1.5-size UNet, random weights
  python benchmarks/capture_overhead.py --size sd15 --device cuda --dtype fp16 --steps 50
Targets at SD-1.5 size: <= 1.10x plain with one token; <= 1.12x with 1,036 tokens, G2R and SRAM on.
"""
from __future__ import annotations

import argparse
import logging

import torch
from _harness import ATTENTION_OPS, MIN_REPEATS, compare, interleaved, pin_threads, profiler_share
from _models import UNET_SIZES, unet, unet_steps

from i2am.engine import AttributionCapture, CaptureConfig

LATENTS = {"tiny": (16, 12), "sd15": (64, 48)}
SRAM_LAYER = "up_blocks.1.attentions.1.transformer_blocks.0.attn2"   # decoder cross-attention layer 2 (16x12)


def build(size: str, device, dtype):
    return unet(size).to(device=device, dtype=dtype), LATENTS[size], UNET_SIZES[size]["cross_attention_dim"]


def peak_bytes(fn, device):
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - base


def measure(model, x, ctx, steps, groups, device, repeats, ref_grid, sram):
    cfg = CaptureConfig(num_steps=steps, time_groups=groups, directions=("r2g", "g2r"),
                        sram_layers=(SRAM_LAYER,) if sram else ())
    held = {}

    def under_capture():
        with AttributionCapture(model, cfg, ref_grid=ref_grid) as cap:
            unet_steps(model, x, ctx, steps)
        held["bytes"] = cap.accumulator_bytes()

    def plain():
        unet_steps(model, x, ctx, steps)

    summary = compare(interleaved({"plain": plain, "capture": under_capture}, repeats=repeats, device=device), "plain")
    plain_peak = peak_bytes(plain, device)
    capture_peak = peak_bytes(under_capture, device)
    share = profiler_share(under_capture, ["i2am/engine/"], device, ATTENTION_OPS)
    return summary["plain"], summary["capture"], held["bytes"], plain_peak, capture_peak, share


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(LATENTS), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--tokens", type=int, choices=[1, 1036], nargs="+", default=[1, 1036],
                        help="the conditionings to run (default both)")
    args = parser.parse_args()
    logging.getLogger("i2am").setLevel(logging.ERROR)  # the one-token case warns that G2R is degenerate: expected
    threads = pin_threads()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    model, latent, width = build(args.size, args.device, dtype)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 4, *latent, device=args.device, dtype=dtype)
    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "CPU"
    print(f"size={args.size} latent={latent} device={args.device} ({name}) dtype={args.dtype} batch={args.batch} "
          f"threads={threads}; {args.repeats} interleaved pairs after a warm-up: median plain seconds, paired median "
          f"ratio (IQR), i2am's own operations as a share of all operator time (the attention kernel counts as the "
          f"model's)")
    print(f"{'conditioning':<34}{'steps':>6}{'plain s':>10}  {'capture / plain':<36}{'i2am ops':>9}{'accum MiB':>11}"
          f"{'extra peak MiB':>16}")
    cases = [("1 token (R2G; G2R degenerate)", 1, None, False),
             ("1036 tokens 37x28 (R2G+G2R+SRAM)", 1036, (37, 28), True)]
    for label, tokens, grid, sram in [case for case in cases if case[1] in args.tokens]:
        ctx = torch.randn(args.batch, tokens, width, device=args.device, dtype=dtype)
        for steps in (args.steps, 2 * args.steps):
            plain, ratio, nbytes, p_peak, c_peak, share = measure(model, x, ctx, steps, min(5, args.steps), args.device,
                                                           args.repeats, grid, sram)
            extra = "n/a (CPU)" if p_peak is None else f"{(c_peak - p_peak) / 2**20:.1f}"
            print(f"{label:<34}{steps:>6}{plain.median:>10.3f}  {ratio.ratio_text():<36}{100 * share:>8.1f}%"
                  f"{nbytes / 2**20:>11.2f}{extra:>16}")


if __name__ == "__main__":
    main()
