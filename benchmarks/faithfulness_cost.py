"""Cost of the faithfulness and sanity checks per sample, in UNet calls and seconds, so users can budget them.

Measured on custom-tiny (the toy world, real code path; ``--model pasd-tiny``: PASD on the toy SR set, re-run
through its own loop): each check is run once on one toy sample and its UNet calls
(forward calls of the step module) and rows (batch rows through the UNet, CFG counted twice) are counted. Rows depend
only on the settings (steps, fractions, random orders, CFG, stages), not on the model size.

The SD-1.5 line is measured, not assumed: the full-size model's UNet (``--sd15-model``: custom, or pbe, ...) is built
from its config (random weights, no download) and ``--sd15-calls`` real calls of it are timed on ``--device`` at its
full latent size and reference token count, batch 1 (after one warm-up call). Each check's SD-1.5 seconds are then
its UNet rows x the measured seconds per row; this leaves out the VAE and the reference encoder, which run once per
regenerated image and are small next to the UNet at SD-1.5 size.

  python benchmarks/faithfulness_cost.py                        # tiny only, 10 DDIM steps
  python benchmarks/faithfulness_cost.py --model pasd-tiny --steps 4   # PASD (UniPC, CFG 9), tiny only
  nice -n 5 python benchmarks/faithfulness_cost.py --steps 4 --sd15 --sd15-calls 2     # + SD-1.5 on CPU fp32
  python benchmarks/faithfulness_cost.py --sd15 --device cuda --dtype fp16 --steps 50

The last lines are the budget of a ``--study-samples`` (100) sample study: UNet rows per sample (each check's rows:
the settings alone decide them, so they hold at SD-1.5 size) x samples, and with ``--sd15`` its measured time.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

from i2am.adapters import create_model
from i2am.data.sr import build_sr_dataset
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.evaluation.faithfulness import FRACTIONS, g2r_curves, r2g_counterfactuals
from i2am.evaluation.randomization import complete_stages, randomization_curves
from i2am.sampling.sampler import Sampler


class Counter:
    def __init__(self, module):
        self.calls = self.rows = 0
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.calls += 1
        self.rows += int((args[0] if args else kwargs["sample"]).shape[0])


def toy_samples(root: Path) -> tuple[dict, dict]:
    """The evaluated sample (a batch of 1) and a donor item (another sample, for the swap counterfactual)."""
    write_toy_vitonhd(root, n_train=1, n_test=2, size=(128, 96), seed=0)
    data = VitonHDDataset(root, "test", "paired", (128, 96), ("agnostic", "densepose"))
    return default_collate([data[0]]), data[1]


def toy_sr_samples(root: Path) -> tuple[dict, dict]:
    """PASD's evaluated sample (a batch of 1) and a donor item, from the toy SR set at pasd-tiny's 128x128."""
    data = build_sr_dataset("toy", root, size=(128, 128), toy_count=2)
    return default_collate([data[0]]), data[1]


BENCH_MODELS = {   # name: (samples, generated-region key, reference keys, what the header says of the sampler)
    "custom-tiny": (toy_samples, "inpaint_mask", ("reference", "reference_mask"), "DDIM steps, CFG 5"),
    "pasd-tiny": (toy_sr_samples, None, ("lr",), "UniPC steps (PASD's own loop), CFG 9"),
}


def measure(name, fn, module) -> dict:
    counter = Counter(module)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    counter.handle.remove()
    return {"check": name, "calls": counter.calls, "rows": counter.rows, "tiny_s": seconds}


def full_size_unet(name: str, device, dtype):
    """The step module of the full-size ``name`` model, built from its config with random weights (meta, then
    materialised and re-initialised: no checkpoint, and the encoders are never allocated), and its inputs' shapes."""
    adapter = create_model(name, device="meta")
    unet = adapter.unet.to_empty(device=device)
    for module in unet.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    unet = unet.to(dtype).eval()
    if not all(bool(torch.isfinite(p).all()) for p in unet.parameters()):
        raise RuntimeError(f"{name}: a UNet parameter was left uninitialised after reset_parameters")
    latent = tuple(s // 8 for s in adapter.image_size)
    tokens = tuple(adapter.uncond_context.shape[-2:]) if hasattr(adapter, "uncond_context") else (
        1, unet.config.cross_attention_dim)
    return unet, (unet.config.in_channels, *latent), tokens


def measured_seconds_per_row(name: str, device, dtype, calls: int) -> tuple[list[float], dict]:
    """Seconds of each of ``calls`` timed batch-1 UNet calls of the full-size model (after one warm-up call)."""
    unet, sample_shape, tokens = full_size_unet(name, device, dtype)
    x = torch.randn(1, *sample_shape, device=device, dtype=dtype)
    context = torch.randn(1, *tokens, device=device, dtype=dtype)
    params = sum(p.numel() for p in unet.parameters())
    seconds = []
    with torch.inference_mode():
        for i in range(calls + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            unet(x, 500, encoder_hidden_states=context)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:                                 # call 0 is the warm-up
                seconds.append(time.perf_counter() - start)
    return seconds, {"params": params, "sample": sample_shape, "tokens": tokens}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="custom-tiny", choices=sorted(BENCH_MODELS), help="the tiny model run")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--random-orders", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="randomisation re-initialisation seeds")
    parser.add_argument("--study-samples", type=int, default=100, help="samples of the budgeted study")
    parser.add_argument("--batch-size", type=int, default=8, help="perturbed runs batched together")
    parser.add_argument("--sd15", action="store_true", help="add the measured SD-1.5-size line")
    parser.add_argument("--sd15-model", default="custom", help="the full-size model whose UNet is timed")
    parser.add_argument("--sd15-calls", type=int, default=2, help="timed UNet calls (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    args = parser.parse_args()
    torch.manual_seed(0)
    adapter = create_model(args.model).eval().requires_grad_(False)
    sampler = Sampler(num_steps=args.steps)
    make_samples, mask_key, reference_keys, sampling = BENCH_MODELS[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        sample, donor = make_samples(Path(tmp) / "toy")
    cfg = CaptureConfig(num_steps=args.steps, time_groups=min(5, args.steps))
    with torch.no_grad(), AttributionCapture(adapter, cfg) as cap:
        adapter.sample(sample, sampler=sampler)
    maps = cap.maps()
    mask = sample[mask_key] if mask_key else None
    step = adapter.step_module
    common = dict(sample_id="bench", query_mask=mask, random_orders=args.random_orders, batch_size=args.batch_size)
    checks = [
        ("attribution run (reference)", lambda: adapter.sample(sample, sampler=sampler)),
        ("G2R deletion+insertion, full regeneration",
         lambda: g2r_curves(adapter, sampler, sample, maps.g2r.ulam, modes=("full",), **common)),
        ("G2R deletion+insertion, teacher-forced proxy (3 steps)",
         lambda: g2r_curves(adapter, sampler, sample, maps.g2r.ulam, modes=("proxy",), **common)),
        ("R2G counterfactuals (swap with another sample's reference + null)",
         lambda: r2g_counterfactuals(adapter, sampler, sample, maps.r2g.ulam, donor=donor, region=mask,
                                     reference_keys=reference_keys)),
        (f"randomisation, cascading + independent ({len(complete_stages(adapter))} stages, {args.seeds} seeds)",
         lambda: randomization_curves(adapter, sampler, sample, cfg, region=None, seeds=range(args.seeds))),
    ]
    print(f"\nfaithfulness cost per sample: {args.model}, {args.steps} {sampling}, {len(FRACTIONS)} fractions, "
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
        device = torch.device(args.device)
        seconds, info = measured_seconds_per_row(args.sd15_model, device, dtype, args.sd15_calls)
        per_row = sum(seconds) / len(seconds)
        print(f"\nSD-1.5 size, MEASURED on {args.device} {args.dtype}: the full-size {args.sd15_model} UNet built from "
              f"config ({info['params'] / 1e6:.0f} M parameters, input {info['sample']}, context {info['tokens']}), "
              f"{len(seconds)} timed batch-1 calls after a warm-up: "
              f"{', '.join(f'{s:.2f}' for s in seconds)} s -> {per_row:.2f} s per UNet row", flush=True)
        print(f"| check ({args.steps} steps) | UNet calls | UNet rows | SD-1.5 s/sample on {args.device} "
              f"(rows x {per_row:.2f} s) |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['check']} | {r['calls']} | {r['rows']} | {r['rows'] * per_row:.0f} |")
    checks_rows = sum(r["rows"] for r in rows[1:])
    study = checks_rows * args.study_samples
    print(f"\nbudget of a {args.study_samples}-sample study ({args.steps} steps, every check above): "
          f"{checks_rows} UNet rows per sample -> {study} UNet rows", flush=True)
    if args.sd15:
        print(f"at the measured {per_row:.3f} s per SD-1.5 row on {args.device} {args.dtype}: "
              f"{study * per_row / 3600:.1f} hours", flush=True)


if __name__ == "__main__":
    main()
