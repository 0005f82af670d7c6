"""Cost of the faithfulness and sanity checks per sample, in UNet calls and seconds, so users can budget them.

Measured on custom-tiny (the toy world, real code path; ``--model pasd-tiny``: PASD on the toy SR set, re-run
through its own loop): each check is run once on one toy sample and its UNet calls
(forward calls of the step module) and rows (batch rows through the UNet, CFG counted twice) are counted. Rows depend
only on the settings (steps, fractions, random orders, CFG, stages), not on the model size.

The SD-1.5 line is measured, not assumed: the full-size model's UNet (``--sd15-model``: custom, or pbe, ...) is built
from its config (random weights, no download) and a batched re-run (``--sd15-runs-per-call`` perturbed runs x 2 CFG
rows per UNet call, the batch the faithfulness re-runs send) is timed on ``--device`` at two step counts
(``--sd15-steps``, after a warm-up): the second count's time is also predicted linearly from the first's, which checks
that the cost is linear in steps. The seconds per call are then extrapolated to ``--sd15-target-steps`` (50) with the
G2R curves' call formula (``calls_per_sample``), printed as calls and seconds per sample and for the study. This
leaves out the VAE and the reference encoder, which run once per regenerated image and are small next to the UNet.

  python benchmarks/faithfulness_cost.py                        # tiny only, 10 DDIM steps
  python benchmarks/faithfulness_cost.py --model pasd-tiny --steps 4   # PASD (UniPC, CFG 9), tiny only
  nice -n 5 python benchmarks/faithfulness_cost.py --sd15-only --sd15 --sd15-runs-per-call 1   # SD-1.5, CPU fp32
  python benchmarks/faithfulness_cost.py --sd15 --device cuda --dtype fp16 --sd15-steps 5 10

The tiny run also prints the G2R curves' counted calls next to the formula's, and the UNet rows of a
``--study-samples`` (100) sample study (rows depend on the settings alone, so they hold at SD-1.5 size).
"""
from __future__ import annotations

import argparse
import math
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


def batched_rerun_seconds(unet, sample_shape, tokens, runs_per_call: int, steps: int, device, dtype) -> float:
    """Seconds of one batched re-run: ``steps`` UNet calls, each on ``runs_per_call`` perturbed runs x 2 CFG rows
    (the batch a faithfulness re-run sends through the UNet), with a DDIM-like update between calls."""
    rows = 2 * runs_per_call
    x = torch.randn(rows, *sample_shape, device=device, dtype=dtype)
    context = torch.randn(rows, *tokens, device=device, dtype=dtype)
    latent = x[:, :4]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        for t in torch.linspace(900, 100, steps).tolist():
            eps = unet(x, int(t), encoder_hidden_states=context).sample
            latent = latent - 0.01 * eps[:, :4]
            x = torch.cat([latent, x[:, 4:]], dim=1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def calls_per_sample(steps: int, runs_per_call: int, random_orders: int, trivial: int,
                     fractions: int) -> dict[str, int]:
    """UNet calls per sample of the G2R curves (the stated formula): P = 1 + 2 x (2 + random + trivial) x (fractions
    - 2) perturbed runs (the all-removed run, then deletion and insertion of every order at each interior fraction),
    batched ``runs_per_call`` at a time, after the unperturbed run; ``full``: ``steps`` calls per batch, ``proxy``:
    one call per distinct proxy step (25 / 50 / 75 % of the schedule) per batch."""
    proxy_points = len({min(steps - 1, max(0, round(p * (steps - 1)))) for p in (0.25, 0.5, 0.75)})
    perturbed = 1 + 2 * (2 + random_orders + trivial) * (fractions - 2)
    batches = math.ceil(perturbed / runs_per_call)
    return {"perturbed_runs": perturbed, "full": steps * (1 + batches), "proxy": steps + proxy_points * batches}


def sd15_batched_cost(args, device, dtype) -> None:
    """MEASURED seconds per batched SD-1.5-size UNet call at two step counts (the linearity check), extrapolated
    linearly to ``--sd15-target-steps``, and the calls and seconds per sample of the G2R curves."""
    unet, sample_shape, tokens = full_size_unet(args.sd15_model, device, dtype)
    params = sum(p.numel() for p in unet.parameters())
    batch = args.sd15_runs_per_call
    batched_rerun_seconds(unet, sample_shape, tokens, batch, 1, device, dtype)       # warm-up
    low, high = sorted(args.sd15_steps)
    t_low = batched_rerun_seconds(unet, sample_shape, tokens, batch, low, device, dtype)
    t_high = batched_rerun_seconds(unet, sample_shape, tokens, batch, high, device, dtype)
    per_call = t_high / high
    predicted = t_low / low * high
    print(f"\nSD-1.5 size, MEASURED on {args.device} {args.dtype}: the full-size {args.sd15_model} UNet built from "
          f"config ({params / 1e6:.0f} M parameters, input {sample_shape}, context {tokens}, random weights), "
          f"batched re-runs of {batch} perturbed runs x 2 CFG rows = {2 * batch} rows per UNet call", flush=True)
    print(f"  {low} steps: {t_low:.2f} s ({t_low / low:.2f} s per call); {high} steps: {t_high:.2f} s "
          f"({per_call:.2f} s per call); linear prediction of {high} steps from {low}: {predicted:.2f} s "
          f"({100 * (t_high - predicted) / predicted:+.1f} %)", flush=True)
    target = args.sd15_target_steps
    calls = calls_per_sample(target, batch, args.random_orders, args.trivial_orders, len(FRACTIONS))
    print(f"  at {target} steps (seconds = calls x {per_call:.2f} s per call, linear in steps; "
          f"{calls['perturbed_runs']} perturbed runs per sample, {batch} per call):", flush=True)
    for mode in ("full", "proxy"):
        seconds = calls[mode] * per_call
        print(f"  sd15 G2R curves {mode}: {calls[mode]} UNet calls per sample, {seconds:.0f} s per sample "
              f"({seconds / 3600:.2f} h); {args.study_samples} samples: {calls[mode] * args.study_samples} calls, "
              f"{seconds * args.study_samples / 3600:.1f} h", flush=True)


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
    parser.add_argument("--sd15-steps", type=int, nargs=2, default=(1, 2),
                        help="the two step counts timed (the linearity check)")
    parser.add_argument("--sd15-target-steps", type=int, default=50, help="steps extrapolated to")
    parser.add_argument("--sd15-runs-per-call", type=int, default=8, help="perturbed runs per batched UNet call")
    parser.add_argument("--sd15-only", action="store_true", help="skip the tiny model's checks")
    parser.add_argument("--trivial-orders", type=int, default=3, help="trivial orders in the formula")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    args = parser.parse_args()
    torch.manual_seed(0)
    if not args.sd15_only:
        tiny_checks(args)
    if args.sd15:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        sd15_batched_cost(args, torch.device(args.device), dtype)


def tiny_checks(args) -> None:
    """Each check run once on one tiny-model sample, its UNet calls and rows counted; the G2R curves' calls are
    printed next to the formula's (``calls_per_sample``)."""
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
    common = dict(sample_id="bench", query_mask=mask, random_orders=args.random_orders, batch_size=args.batch_size,
                  foreground=sample.get("reference_mask"))
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
    formula = calls_per_sample(args.steps, args.batch_size, args.random_orders, args.trivial_orders, len(FRACTIONS))
    print(f"\nG2R curves, UNet calls counted vs the formula: full {rows[1]['calls']} vs {formula['full']}, "
          f"proxy {rows[2]['calls']} vs {formula['proxy']}", flush=True)
    checks_rows = sum(r["rows"] for r in rows[1:])
    print(f"budget of a {args.study_samples}-sample study ({args.steps} steps, every check above): "
          f"{checks_rows} UNet rows per sample -> {checks_rows * args.study_samples} UNet rows", flush=True)


if __name__ == "__main__":
    main()
