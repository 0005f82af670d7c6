"""Cost of the faithfulness and sanity checks per sample, in UNet calls and seconds, so users can budget them.

Measured on custom-tiny (the toy world, real code path): each check is run once on one toy sample and its UNet calls
(forward calls of the step module) and rows (batch rows through the UNet, CFG counted twice) are counted. Rows depend
only on the settings (steps, fractions, random orders, CFG, stages), not on the model size, so the SD-1.5 line is
rows x the measured seconds per row of an SD-1.5-size UNet (random weights, 1,036 reference tokens, 64x48 latents,
batch --sd-batch): an estimate that leaves out the VAE and reference encoders.

  python benchmarks/faithfulness_cost.py                        # tiny only, 10 DDIM steps
  python benchmarks/faithfulness_cost.py --sd15 --steps 50      # plus the SD-1.5 estimate (one UNet call, CPU ~10 s)
  python benchmarks/faithfulness_cost.py --sd15 --device cuda --dtype fp16 --steps 50
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch.utils.data import default_collate

from i2am.attribution import AttributionCapture, CaptureConfig
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset
from i2am.metrics.faithfulness import FRACTIONS, g2r_curves, r2g_counterfactuals
from i2am.metrics.randomization import denoiser_stages, randomization_curves
from i2am.models import create_model
from i2am.models.sampler import Sampler


class Counter:
    def __init__(self, module):
        self.calls = self.rows = 0
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.calls += 1
        self.rows += int((args[0] if args else kwargs["sample"]).shape[0])


def toy_sample(root: Path) -> dict:
    write_toy_vitonhd(root, n_train=1, n_test=1, size=(128, 96), seed=0)
    data = VitonHDDataset(root, "test", "paired", (128, 96), ("agnostic", "densepose"))
    return default_collate([data[0]])


def measure(name, fn, module) -> dict:
    counter = Counter(module)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    counter.handle.remove()
    return {"check": name, "calls": counter.calls, "rows": counter.rows, "tiny_s": seconds}


def sd15_seconds_per_row(device, dtype, batch: int) -> float:
    unet = UNet2DConditionModel(in_channels=17, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                attention_head_dim=8, norm_num_groups=32,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3).to(device, dtype).eval()
    x = torch.randn(batch, 17, 64, 48, device=device, dtype=dtype)
    ctx = torch.randn(batch, 1036, 768, device=device, dtype=dtype)
    with torch.inference_mode():
        unet(x, 500, ctx)                     # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        unet(x, 500, ctx)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--random-orders", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="perturbed runs batched together")
    parser.add_argument("--sd15", action="store_true", help="add the SD-1.5-size estimate")
    parser.add_argument("--sd-batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    args = parser.parse_args()
    torch.manual_seed(0)
    adapter = create_model("custom-tiny").eval().requires_grad_(False)
    sampler = Sampler(num_steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        sample = toy_sample(Path(tmp) / "toy")
    cfg = CaptureConfig(num_steps=args.steps, time_groups=min(5, args.steps))
    with torch.no_grad(), AttributionCapture(adapter, cfg) as cap:
        adapter.sample(sample, sampler=sampler)
    maps = cap.maps()
    mask = sample["inpaint_mask"]
    step = adapter.step_module
    common = dict(sample_id="bench", query_mask=mask, random_orders=args.random_orders, batch_size=args.batch_size)
    checks = [
        ("attribution run (reference)", lambda: adapter.sample(sample, sampler=sampler)),
        ("G2R deletion+insertion, full regeneration",
         lambda: g2r_curves(adapter, sampler, sample, maps.g2r.ulam, modes=("full",), **common)),
        ("G2R deletion+insertion, teacher-forced proxy (3 steps)",
         lambda: g2r_curves(adapter, sampler, sample, maps.g2r.ulam, modes=("proxy",), **common)),
        ("R2G counterfactuals (swap + null)",
         lambda: r2g_counterfactuals(adapter, sampler, sample, maps.r2g.ulam, region=mask)),
        (f"randomisation, cascading + independent ({len(denoiser_stages(step))} stages)",
         lambda: randomization_curves(adapter, sampler, sample, cfg, region=None)),
    ]
    print(f"\nfaithfulness cost per sample: custom-tiny, {args.steps} DDIM steps, CFG 5, {len(FRACTIONS)} fractions, "
          f"{args.random_orders} random orders, batch {args.batch_size}", flush=True)
    print("| check | UNet calls | UNet rows | tiny s/sample | ratio to the attribution run |", flush=True)
    print("|---|---|---|---|---|", flush=True)
    rows = []
    for name, fn in checks:   # printed as measured
        r = measure(name, fn, step)
        rows.append(r)
        print(f"| {r['check']} | {r['calls']} | {r['rows']} | {r['tiny_s']:.2f} | {r['rows'] / rows[0]['rows']:.1f}x |",
              flush=True)
    if args.sd15:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        per_row = sd15_seconds_per_row(torch.device(args.device), dtype, args.sd_batch)
        print(f"\nSD-1.5 estimate: {per_row:.3f} s per UNet row on {args.device} {args.dtype} (batch {args.sd_batch})")
        print("| check | SD-1.5 s/sample (rows x s/row) |\n|---|---|")
        for r in rows:
            print(f"| {r['check']} | {r['rows'] * per_row:.0f} |")


if __name__ == "__main__":
    main()
