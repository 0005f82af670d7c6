"""The capture-overhead targets in one command: the four cells docs/results.md judges the capture by, timed and
profiled through benchmarks/_harness.py, printed as one table (and written into docs/results.md with ``--docs``).

Cells (fp32, random weights, one denoising step per run):
  UNet SD-1.5 size, 64x48 latent, 1,036 tokens on 37x28, R2G + G2R + SRAM   target <= 1.12x
  FLUX-like "cpu" (2,112 tokens), one relation, I2AM, image:reference        target <= 1.05x
  FLUX-like "cpu", one relation, share, image:reference                      target <= 1.10x
  FLUX-like "cpu", every relation, both normalisations                       target <= 1.20x
``--flux flux1`` times the three FLUX cells at FLUX.1's own width instead (24 heads x 128, one double-stream block)
on a FLUX.1 Kontext 1024x1024 edit (512 text + 4,096 generated + 4,096 reference tokens), without the UNet cell: the
"cpu" stand-in keeps 4 heads, which shrinks the model's linear layers (width squared) far more than the capture's
generated x reference logits (width), so the capture's share there is about 3 times FLUX.1's at 1024x1024.
Each model's plain run and its captures are interleaved (``--repeats`` >= 11 pairs after a warm-up); the ratio is the
median (IQR) of the paired ratios. Each cell is also profiled ``--profiles`` times: i2am's own operations as a share
s of all operator time (the attention kernel the capture's pass-through runs counts as the model's), with the ratio
it implies, 1 / (1 - s), which is steadier than the paired ratios on a loaded machine.

  python benchmarks/capture_targets.py                 # the four cells, an estimated 5 minutes on a quiet 2-core CPU
  python benchmarks/capture_targets.py --docs          # ... and rewrite the table in docs/results.md
  python benchmarks/capture_targets.py --profile-only  # the profiler shares alone (no timed pairs)
  python benchmarks/capture_targets.py --threads 1     # one torch thread (the capture then tiles large blocks)
  python benchmarks/capture_targets.py --flux flux1 --docs   # the FLUX cells at FLUX.1 width, about 20 minutes
  python benchmarks/capture_targets.py --dry-run       # tiny models, 2 pairs, 1 profile: the script runs
"""
from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

import torch
from _harness import (
    ATTENTION_OPS,
    MIN_REPEATS,
    compare,
    interleaved,
    machine_load,
    pin_threads,
    profiler_share,
    write_doc_block,
)
from _models import flux, flux_inputs, flux_steps, unet, unet_steps
from capture_overhead import LATENTS, SRAM_LAYER

from i2am.engine import AttributionCapture, CaptureConfig
from i2am.engine.joint import JointAttentionCapture

DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"
DOC_BLOCKS = {"cpu": "bench-capture-targets", "flux1": "bench-capture-targets-flux1"}
UNET_TOKENS, UNET_GRID = 1036, (37, 28)
FLUX_MODELS = {   # --flux -> (the model's name in the table, _models.flux arguments; the dry run's overrides)
    "cpu": ("FLUX-like", dict(size="cpu")),
    "flux1": ("FLUX.1 width, 1 double block, Kontext 1024²", dict(size="flux1", layers=1, single=0)),
}
DRY_RUN = dict(layers=1, single=1, grid=8, text=8, heads=2)
FLUX_CELLS = {   # cell -> (JointAttentionCapture keywords, target)
    "one relation, I2AM, `image:reference`": (dict(relations=("image:reference",), normalisations=("i2am",)), 1.05),
    "one relation, `share`, `image:reference`": (dict(relations=("image:reference",), normalisations=("share",)),
                                                 1.10),
    "every relation, both normalisations": ({}, 1.20),
}
UNET_CELL, UNET_TARGET = "UNet SD-1.5 size, 1,036 tokens, R2G + G2R + SRAM", 1.12


def unet_runs(dry_run: bool) -> dict:
    size = "tiny" if dry_run else "sd15"
    model = unet(size)
    torch.manual_seed(0)
    x = torch.randn(1, 4, *LATENTS[size])
    ctx = torch.randn(1, UNET_TOKENS, model.config.cross_attention_dim)
    cfg = CaptureConfig(num_steps=1, time_groups=1, directions=("r2g", "g2r"), sram_layers=(SRAM_LAYER,))

    def captured():
        with AttributionCapture(model, cfg, ref_grid=UNET_GRID):
            unet_steps(model, x, ctx, 1)

    return {"plain": lambda: unet_steps(model, x, ctx, 1), UNET_CELL: captured}


def flux_runs(which: str, dry_run: bool, one_pass_budget: int | None = None) -> dict:
    name, arguments = FLUX_MODELS[which]
    model, s = flux(**{**arguments, **(DRY_RUN if dry_run else {})})
    x = flux_inputs(model, s, reference=True)

    def captured(keywords):
        def run():
            cfg = CaptureConfig(num_steps=1, time_groups=1, **({} if one_pass_budget is None else
                                                                 dict(one_pass_budget=one_pass_budget)))
            with JointAttentionCapture(model, cfg, **keywords):
                flux_steps(model, x, 1)
        return run

    runs = {"plain": lambda: flux_steps(model, x, 1)}
    runs.update({f"{name}, {cell}": captured(keywords) for cell, (keywords, _) in FLUX_CELLS.items()})
    return runs


def measure(runs: dict, repeats: int, profiles: int, profile_only: bool) -> dict[str, dict]:
    """Per cell: the paired ratio summary (unless ``profile_only``) and the profiler shares of ``profiles`` runs."""
    summary = None if profile_only else compare(interleaved(runs, repeats=repeats), "plain")
    if profile_only:   # a warm-up, as the timed runs give one
        for run in runs.values():
            run()
    out = {}
    for cell, run in runs.items():
        if cell == "plain":
            continue
        shares = [profiler_share(run, ["i2am/engine/"], "cpu", ATTENTION_OPS) for _ in range(profiles)]
        out[cell] = {"ratio": None if summary is None else summary[cell], "shares": shares,
                     "plain_s": None if summary is None else summary["plain"]}
    return out


def table(results: dict[str, dict], targets: dict[str, float]) -> str:
    rows = [("| cell | target | capture / plain, paired median (IQR, n) | plain s per step (median, IQR) | "
             "i2am's profiler share (median; runs) | implied 1 / (1 - share) |"), "|---|---|---|---|---|---|"]
    for cell, r in results.items():
        shares = r["shares"]
        share = statistics.median(shares)
        runs = ", ".join(f"{100 * s:.1f}" for s in shares)
        ratio = "not timed" if r["ratio"] is None else r["ratio"].ratio_text()
        seconds = r["plain_s"]
        plain = "" if seconds is None else f"{seconds.median:.2f} ({seconds.q1:.2f}-{seconds.q3:.2f})"
        rows.append(f"| {cell} | <= {targets[cell]:.2f}x | {ratio} | {plain} | {100 * share:.1f} % ({runs}) | "
                    f"{1 / (1 - share):.3f}x |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS, help="interleaved pairs per model (default 11)")
    ap.add_argument("--profiles", type=int, default=3, help="profiled runs per cell (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--profile-only", action="store_true", help="the profiler shares alone, no timed pairs")
    ap.add_argument("--dry-run", action="store_true", help="tiny models, 2 pairs, 1 profile (checks the script)")
    ap.add_argument("--flux", choices=sorted(FLUX_MODELS), default="cpu",
                    help="cpu: the FLUX-like stand-in, with the UNet cell (default); flux1: FLUX.1 width, FLUX cells")
    ap.add_argument("--one-pass-budget", type=int, default=None,
                    help="CaptureConfig.one_pass_budget of the FLUX captures (default: its default; 67108864, the "
                         "chunk_budget, forms a block of several chunks twice where R2G needs its column sums)")
    ap.add_argument("--docs", action="store_true", help="rewrite the --flux choice's block of docs/results.md")
    args = ap.parse_args()
    if args.docs and args.one_pass_budget is not None:
        ap.error("--docs with --one-pass-budget: the docs' tables are of the default configuration")
    if args.dry_run and args.docs:
        ap.error("--docs with --dry-run would write tiny-model figures into the docs")
    if args.dry_run:
        args.repeats, args.profiles = 2, 1
    elif args.repeats < MIN_REPEATS and not args.profile_only:
        ap.error(f"--repeats {args.repeats}: the table needs at least {MIN_REPEATS} pairs")
    logging.getLogger("i2am").setLevel(logging.ERROR)
    threads = pin_threads(args.threads)
    torch.set_grad_enabled(False)
    load_before = machine_load()
    results = {} if args.flux != "cpu" else measure(unet_runs(args.dry_run), args.repeats, args.profiles,
                                                      args.profile_only)
    flux_cells = flux_runs(args.flux, args.dry_run, args.one_pass_budget)
    results.update(measure(flux_cells, args.repeats, args.profiles, args.profile_only))
    name = FLUX_MODELS[args.flux][0]
    targets = {UNET_CELL: UNET_TARGET, **{f"{name}, {cell}": target for cell, (_, target) in FLUX_CELLS.items()}}
    timed = "profiler shares only" if args.profile_only else f"{args.repeats} interleaved pairs after a warm-up"
    head = (f"{'Tiny models (dry run), ' if args.dry_run else ''}cpu, fp32, one step per run, {timed}, "
            f"{args.profiles} profiled runs per cell, {threads} pinned torch threads, torch {torch.__version__}; "
            f"{load_before} before the runs, {machine_load()} after.")
    text = head + "\n\n" + table(results, targets)
    print(text)
    if args.docs:
        write_doc_block(DOC, DOC_BLOCKS[args.flux], text)
        print(f"wrote the {DOC_BLOCKS[args.flux]} block of {DOC}")


if __name__ == "__main__":
    main()
