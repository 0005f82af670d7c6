"""Every benchmark at real size on one GPU (H100/H200): a JSON and a Markdown table. Sections 1-3 take under 8
minutes; section 4 alone is estimated at about 5 more (unmeasured: no GPU has run it yet), so on a 10-minute slot
run it apart with --sections wan.

  python benchmarks/gpu.py --device cuda --sections unet flux precision   # SD-1.5 fp16 50 steps, FLUX.1 bf16 4 steps
  python benchmarks/gpu.py --device cuda --sections wan                   # Wan 2.1 I2V-14B size, 480p / 81 frames
  python benchmarks/gpu.py --device cpu --dry-run             # every section at tiny sizes (the test suite runs it)

1. SD-1.5 UNet (random weights), 512x512 (64x64 latent), CFG (batch 2), 77 text tokens, fp16, 50 steps: plain vs
   the full capture (R2G + G2R on every cross-attention layer, the text as a 1 x 77 row).
2. FLUX.1 size (19 double + 38 single blocks, 24 heads x 128), a FLUX.1 Kontext 1024x1024 edit (512 text + 64x64
   generated + 64x64 reference tokens), bf16, 4 steps: plain vs one relation (image:reference, I2AM normalisation)
   vs every relation and both normalisations, and vs attention-map-diffusers 1.0 (image->text of every step) when
   it can be imported.
3. Precision: the maps of 2 steps (dry run: 1) computed in fp16 (UNet) and bf16 (transformer) against fp32 on the
   same weights and inputs. Each map's Pearson correlation with its fp32 map, r, must satisfy 1 - r <= 1e-3 (fp16)
   / 1e-2 (bf16):
   1 - r is about half the squared ratio of the error's spread to the map's, so these allow errors of about 4.5 %
   (fp16) and 14 % (bf16) of a map's spread; bf16 keeps 8 mantissa bits to fp16's 11, so its errors are ~8x larger,
   and both pass through the whole network before reaching the attention.
4. Wan 2.1 I2V-14B size (40 blocks, 40 heads x 128; 16.4 B random bf16 parameters, 30.5 GiB, built on the GPU),
   480x832, 81 frames: 21 x 30 x 52 = 32,760 video tokens against 257 CLIP image + 512 text keys, bf16, 1 step per
   call, no CFG: plain vs i2am.trace of image:reference vs every relation (benchmarks/video_overhead.py), and the
   capture's state after 2 and 4 steps (it must not grow). Routes do not apply (a separate cross-attention): a row
   says so.
Each comparison: interleaved pairs, warm-up, median + IQR (benchmarks/_harness.py), and the profiler share of
i2am's own operations; on CUDA the extra peak memory of the capture.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from _harness import ATTENTION_OPS, I2AM_OPS, compare, interleaved, pin_threads, profiler_share
from _models import DTYPES, flux, flux_inputs, flux_steps, unet, unet_inputs, unet_steps, wan, wan_inputs
from diffusers.utils import logging as diffusers_logging
from video_overhead import NO_ROUTES, ROUTES, VARIANTS, shape_text, state_by_steps, video_runs

from i2am.engine import AttributionCapture, CaptureConfig
from i2am.engine.joint import JointAttentionCapture

REAL = dict(unet="sd15", latent=(64, 64), unet_steps=50, flux="flux1", flux_over={}, flux_steps=4, repeats=11,
            precision_steps=2, wan="wan480p", wan_over={}, wan_steps=1, wan_memory_steps=(2, 4))
DRY = dict(unet="tiny", latent=(8, 8), unet_steps=1, flux="cpu", flux_over=dict(layers=1, single=1, grid=4, text=8),
           flux_steps=1, repeats=1, precision_steps=1, wan="cpu",
           wan_over=dict(blocks=1, heads=1, ffn=64, text_dim=16, image_dim=16, frames=5, height=32, width=48),
           wan_steps=1, wan_memory_steps=(1, 2))
SECTIONS = ("unet", "flux", "wan", "precision")
TOLERANCE = {"fp16": 1e-3, "bf16": 1e-2}     # on 1 - Pearson r (module docstring)


def peak_extra_mib(fn, baseline, device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    peaks = []
    for f in (baseline, fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        f()
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - start)
    return (peaks[1] - peaks[0]) / 2**20


def unet_capture(model, ctx, steps):
    cfg = CaptureConfig(num_steps=steps, cfg_layout="uncond_cond")
    return AttributionCapture(model, cfg, ref_grid=(1, ctx.shape[1]))


def bench_unet(p, device, dtype, rows):
    model = unet(p["unet"], sample_size=p["latent"][0]).to(device, DTYPES[dtype])
    x, ctx = (t.to(device, DTYPES[dtype]) for t in unet_inputs(model, p["latent"]))
    steps, held = p["unet_steps"], {}

    def plain():
        unet_steps(model, x, ctx, steps)

    def captured():
        with unet_capture(model, ctx, steps) as cap:
            unet_steps(model, x, ctx, steps)
        held["bytes"] = cap.accumulator_bytes()

    case = f"UNet {p['unet']}, {p['latent'][0]}x{p['latent'][1]} latent, CFG, {dtype}, {steps} steps"
    add_rows(rows, case, {"plain": plain, "i2am, text, R2G + G2R, every layer": captured}, p, device, held)


def bench_flux(p, device, dtype, rows):
    model, s = flux(p["flux"], **p["flux_over"])
    model = model.to(device, DTYPES[dtype])
    x = flux_inputs(model, s, reference=True, device=device, dtype=DTYPES[dtype])
    steps, held = p["flux_steps"], {}

    def captured(**kw):
        def run():
            cap = JointAttentionCapture(model, CaptureConfig(num_steps=steps, time_groups=1), **kw)
            with cap:
                flux_steps(model, x, steps, device)
            held["bytes"] = cap.accumulator_bytes()
        return run

    runs = {"plain": lambda: flux_steps(model, x, steps, device),
            "i2am, image:reference (I2AM)": captured(relations=("image:reference",), normalisations=("i2am",)),
            "i2am, every relation, both normalisations": captured()}
    try:
        from attention_map_diffusers import AttentionCapture
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
        pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None,
                            text_encoder_2=None, tokenizer_2=None, transformer=model)

        def amd():
            cap = AttentionCapture(pipe, relations="image->text", timesteps="all", offload=device)
            with cap:
                flux_steps(model, x, steps, device)
            held["bytes"] = cap.collector.peak_capture_bytes
            cap.compute()
        runs["attention-map-diffusers 1.0, image->text"] = amd
    except ImportError:
        rows.append(dict(case="FLUX", variant="attention-map-diffusers 1.0", note="not installed: not measured"))
    case = (f"FLUX {p['flux']}: {s['layers']}+{s['single']} blocks, {s['heads']} heads, {s['text']} text + "
            f"2x{s['grid']}^2 image tokens, {dtype}, {steps} steps")
    add_rows(rows, case, runs, p, device, held)


def bench_wan(p, device, dtype, rows):
    pipe, s = wan(p["wan"], device, DTYPES[dtype], **p["wan_over"])
    x = wan_inputs(s, device, DTYPES[dtype])
    steps, held = p["wan_steps"], {}
    case = f"{shape_text(p['wan'], s)}, {dtype}, {steps} steps"
    add_rows(rows, case, video_runs(pipe, x, steps, held), p, device, held)
    for row in rows[-len(VARIANTS):]:      # the capture's state at two step counts: it must not grow
        row["state_mib_by_steps"] = {n: b / 2**20 for n, b in
                                     state_by_steps(pipe, x, VARIANTS[row["variant"]], p["wan_memory_steps"]).items()}
    rows.append(dict(case=case, variant=ROUTES, note=NO_ROUTES))


def add_rows(rows, case, runs, p, device, held):
    times = interleaved(runs, repeats=p["repeats"], device=device)
    summary = compare(times, "plain")
    rows.append(dict(case=case, variant="plain", seconds=summary["plain"].as_dict()))
    for name, fn in runs.items():
        if name == "plain":
            continue
        fn()    # held["bytes"] is this run's
        row = dict(case=case, variant=name, ratio=summary[name].as_dict(), map_mib=held.get("bytes", 0) / 2**20,
                   peak_extra_mib=peak_extra_mib(fn, runs["plain"], device))
        if name.startswith("i2am"):
            row["profiler_share"] = profiler_share(fn, I2AM_OPS, device, ATTENTION_OPS)
        rows.append(row)


def normalised_maps(maps) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in maps.raw.items():
        if key.startswith(("r2g/", "g2r/")):
            v = value.float().cpu()
            out[key] = v / v.sum()
    return out


def precision(p, device, low_unet, low_flux) -> list[dict]:
    """fp32 maps vs low-precision maps of a few steps on the same weights and inputs."""
    results = []
    model32 = unet(p["unet"], sample_size=p["latent"][0]).to(device)
    x, ctx = (t.to(device) for t in unet_inputs(model32, p["latent"]))
    maps = {}
    for dtype in ("fp32", low_unet):
        model = model32.to(dtype=DTYPES[dtype])
        with unet_capture(model, ctx, p["precision_steps"]) as cap:
            unet_steps(model, x.to(DTYPES[dtype]), ctx.to(DTYPES[dtype]), p["precision_steps"])
        maps[dtype] = normalised_maps(cap.maps())
    results.append(agreement("UNet", maps["fp32"], maps[low_unet], low_unet))
    del model32
    fmodel, s = flux(p["flux"], **p["flux_over"])
    fmodel = fmodel.to(device)
    for dtype in ("fp32", low_flux):
        model = fmodel.to(dtype=DTYPES[dtype])
        cap = JointAttentionCapture(model, CaptureConfig(num_steps=p["precision_steps"], time_groups=1))
        with cap:
            flux_steps(model, flux_inputs(model, s, reference=True, device=device, dtype=DTYPES[dtype]),
                       p["precision_steps"], device)
        maps[dtype] = normalised_maps(cap.maps())
    results.append(agreement("FLUX", maps["fp32"], maps[low_flux], low_flux))
    return results


def agreement(model, ref, low, dtype) -> dict:
    worst = max(1 - torch.corrcoef(torch.stack([ref[k].flatten(), low[k].flatten()]))[0, 1].item() for k in ref)
    return dict(model=model, dtype=dtype, maps=len(ref), worst_one_minus_r=worst, tolerance=TOLERANCE[dtype],
                agree=worst <= TOLERANCE[dtype])


def markdown(report) -> str:
    lines = [(f"Device: {report['device']}; torch {report['torch']}; {report['repeats']} interleaved pairs after a "
             "warm-up."), "", "| case | variant | time | map MiB | extra peak MiB | profiler share of i2am ops |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "note" in r:
            lines.append(f"| {r['case']} | {r['variant']} | {r['note']} | | | |")
            continue
        if "seconds" in r:
            s = r["seconds"]
            lines.append(f"| {r['case']} | plain | {s['median']:.3f} s (IQR {s['q1']:.3f}-{s['q3']:.3f}) | | | |")
            continue
        q = r["ratio"]
        peak = "n/a (CPU)" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.1f}"
        share = f"{100 * r['profiler_share']:.1f} %" if "profiler_share" in r else "-"
        state = f"{r['map_mib']:.2f}"
        if "state_mib_by_steps" in r:
            state += " (" + ", ".join(f"{n} steps: {v:.2f}" for n, v in r["state_mib_by_steps"].items()) + ")"
        lines.append(f"| {r['case']} | {r['variant']} | {q['median']:.3f}x plain (IQR {q['q1']:.3f}-{q['q3']:.3f}) | "
                     f"{state} | {peak} | {share} |")
    lines += ["", "| model | dtype | maps | worst 1 - r vs fp32 | tolerance | agree |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c['model']} | {c['dtype']} | {c['maps']} | {c['worst_one_minus_r']:.2e} | {c['tolerance']} | "
              f"{'yes' if c['agree'] else 'NO'} |" for c in report["precision"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, 2 repeats: checks the script, not speed")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench-gpu"))
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="run these sections only (e.g. --sections wan: the video benchmark alone)")
    args = ap.parse_args()
    logging.getLogger("i2am").setLevel(logging.ERROR)
    diffusers_logging.set_verbosity_error()      # casting random-weight models with .to(dtype) is intended here
    if torch.device(args.device).type == "cpu":
        pin_threads(1 if args.dry_run else None)    # a dry run checks the code: one thread stays clear of others' load
    torch.set_grad_enabled(False)
    p = DRY if args.dry_run else REAL
    cpu = torch.device(args.device).type == "cpu"
    low_unet = "bf16" if cpu else "fp16"          # fp16 convolutions are a GPU path; the CPU dry run uses bf16
    rows: list[dict] = []
    if "unet" in args.sections:
        bench_unet(p, args.device, "fp32" if cpu else low_unet, rows)    # low precision is slow on CPU: fp32 timings
    if "flux" in args.sections:
        bench_flux(p, args.device, "fp32" if cpu else "bf16", rows)
    if "wan" in args.sections:
        bench_wan(p, args.device, "fp32" if cpu else "bf16", rows)
    name = torch.cuda.get_device_name() if not cpu else "CPU"
    report = dict(device=f"{args.device} ({name})", torch=torch.__version__, dry_run=args.dry_run,
                  repeats=p["repeats"], rows=rows,
                  precision=precision(p, args.device, low_unet, "bf16") if "precision" in args.sections else [])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all(c["agree"] for c in report["precision"]) else 1


if __name__ == "__main__":
    sys.exit(main())
