"""One tool, one case, in its own process (benchmarks/peers.py starts it): plain runs and runs under the tool,
interleaved and paired by benchmarks/_harness.py, the tool's profiler share, what it records, and its maps of the
relation the tools share (saved for the runner to compare).

Cases (equal work: the same rows, blocks and steps for every tool):
  flux  FLUX-like transformer, 2 double + 4 single blocks, 64 text tokens, 32x32 generated tokens and no reference
        (so every tool scores 1,024 image rows); the double-stream blocks, the only ones every tool records.
        i2am: relation "share:text" (a generated token's attention to the text, of its whole row);
        attention-map-diffusers (amd): "image->text" of every step, heads averaged.
  unet  a tiny SD-layout UNet on a 64x64 latent with CFG (unconditional row first), 77 text tokens; the
        cross-attention layers DAAM records. i2am: G2R with SRAM on those layers (DAAM's word maps);
        daam: its trace hooks; amd: "image->text".

  python benchmarks/peer_worker.py --tool i2am --case flux --out /tmp/i2am_flux     # i2am: the project's venv
  .venv-peers/bin/python benchmarks/peer_worker.py --tool amd --case flux --out /tmp/amd_flux
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from _harness import compare, interleaved, pin_threads, profiler_share
from _models import flux, flux_inputs, flux_steps, unet, unet_inputs, unet_steps

MARKERS = {"i2am": ["i2am/engine/", "i2am/tracing/"], "amd": ["attention_map_diffusers/"], "daam": ["daam/"]}
UNET_LATENT = (16, 16)       # DAAM needs square grids
DAAM_SAMPLE_SIZE = 64        # DAAM reads the latent side from sample_size (64: it assumes 4,096 latent positions)


# ------------------------------------------------------------------ flux: i2am share:text vs amd image->text
def i2am_flux(model, x, steps, blocks="group:double"):
    from i2am.engine import CaptureConfig
    from i2am.engine.joint import JointAttentionCapture

    def run():
        cap = JointAttentionCapture(model, CaptureConfig(num_steps=steps, time_groups=1, layers=blocks),
                                    relations=("text",), normalisations=("share",))
        with cap:
            flux_steps(model, x, steps)
        maps = cap.maps()
        names = [b.name for b in cap.blocks]   # raw maps: r2g [B, G, H, h, w], g2r [B, G, H, 1, T]; G = 1 group
        return dict(r2g={n: maps.raw[f"r2g/share:text/{n}"][:, 0].mean(1).flatten(1) for n in names},
                    g2r={n: maps.raw[f"g2r/share:text/{n}"][:, 0].mean(1).flatten(1) for n in names},
                    blocks=len(names), bytes=cap.accumulator_bytes())
    return run


def amd_pipe(model):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=model)


def amd_run(pipe, steps_fn, gen_tokens):
    from attention_map_diffusers import AttentionCapture

    def run():
        cap = AttentionCapture(pipe, relations="image->text", timesteps="all")
        with cap:
            steps_fn()
        stored = cap.collector.peak_capture_bytes
        full = {}
        for rec in cap.compute():        # one record per block and step: [B, 1 (heads averaged), image rows, text]
            name = rec.layer_id.split(".", 1)[1]                   # "transformer.<block>" -> "<block>"
            full[name] = full.get(name, 0) + rec.data.float()[:, 0]
        return dict(full=full, r2g={n: f.sum(-1) for n, f in full.items()},
                    g2r={n: f.sum(-2) / gen_tokens for n, f in full.items()}, blocks=len(full), bytes=stored,
                    batch=next(iter(full.values())).shape[0] if full else 0)
    return run


# ------------------------------------------------------------------ unet: i2am SRAM word maps vs DAAM vs amd
def daam_layers(model, side: int = UNET_LATENT[0]) -> list[str]:
    """DAAM's cross-attention layers in DAAM's order (up blocks, then down), by module name, and whether DAAM keeps
    their maps: it drops 8x8 grids (8x smaller than the 64x64 latent it assumes)."""
    names = {id(m): n for n, m in model.named_modules()}
    levels = len(model.down_blocks) - 1
    sides = [side >> (levels - i) for i in range(len(model.up_blocks))] + [side >> i for i in
                                                                           range(len(model.down_blocks))]
    out = []
    for block, grid in zip(list(model.up_blocks) + list(model.down_blocks), sides):
        if "CrossAttn" in type(block).__name__:
            out += [(names[id(t.attn2)], grid != 8) for a in block.attentions for t in a.transformer_blocks]
    return out


def i2am_unet(model, x, ctx, steps):
    from i2am.engine import AttributionCapture, CaptureConfig
    layers = [name for name, kept in daam_layers(model) if kept]

    def run():
        cfg = CaptureConfig(num_steps=steps, time_groups=1, directions=("g2r",), layers=layers, sram_layers=layers,
                            cfg_layout="uncond_cond")
        with AttributionCapture(model, cfg, ref_grid=(1, ctx.shape[1])) as cap:   # text: a 1 x T row
            unet_steps(model, x, ctx, steps)
        maps = cap.maps()
        words = {name: maps.daam_word_maps(name)[0] for name in layers}       # [T, h, w], conditional row
        return dict(words=words, blocks=len(words), bytes=cap.accumulator_bytes())
    return run


def daam_unet(model, x, ctx, steps):
    from daam import trace
    pipe = amd_pipe_unet(model)
    layers = [name for name, _ in daam_layers(model)]             # DAAM numbers every layer, keeps some

    def run():
        with trace(pipe) as tc:
            unet_steps(model, x, ctx, steps)
            heat = {}
            for (_, layer, _head), m in tc.all_heat_maps:       # [T, h, w] per head, conditional half, summed
                heat.setdefault(layers[layer], []).append(m)
        words = {name: torch.stack(ms).mean(0) for name, ms in heat.items()}
        return dict(words=words, blocks=len(words),
                    bytes=sum(m.numel() * m.element_size() for ms in heat.values() for m in ms))
    return run


def _tiny_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), norm_num_groups=8, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def amd_unet(model, x, ctx, steps):
    return amd_run(amd_pipe_unet(model), lambda: unet_steps(model, x, ctx, steps), UNET_LATENT[0] * UNET_LATENT[1])


# ------------------------------------------------------------------ driver
def tool_run(tool: str, case: str, steps: int):
    if case == "flux":
        model, s = flux("cpu")
        x = flux_inputs(model, s, reference=False)
        tools = {"i2am": lambda: i2am_flux(model, x, steps),
                 "amd": lambda: amd_run(amd_pipe(model), lambda: flux_steps(model, x, steps), s["grid"] ** 2)}
        return tools[tool](), lambda: flux_steps(model, x, steps), (model, s)
    model = unet("tiny", sample_size=DAAM_SAMPLE_SIZE)
    x, ctx = unet_inputs(model, UNET_LATENT)
    tools = {"i2am": i2am_unet, "daam": daam_unet, "amd": amd_unet}
    return tools[tool](model, x, ctx, steps), lambda: unet_steps(model, x, ctx, steps), (model, None)


def coverage(tool: str, case: str, steps: int, built) -> dict:
    """What the tool records where it is left to choose (every block; a non-square grid), untimed."""
    model, s = built
    out = {}
    if case == "flux":
        if tool == "i2am":
            out["blocks_all"] = i2am_flux(model, flux_inputs(model, s, reference=False), 1, blocks="all")()["blocks"]
        out["blocks_total"] = s["layers"] + s["single"]
        grid = (16, 24)
        x = flux_inputs(model, s, reference=False, grid=grid)
        try:
            run = (i2am_flux(model, x, 1) if tool == "i2am"
                   else amd_run(amd_pipe(model), lambda: flux_steps(model, x, 1), grid[0] * grid[1]))
            out["nonsquare"] = run()["r2g"]
        except (RuntimeError, ValueError) as err:   # a tool that cannot take the shape: its error is the finding
            out["nonsquare_error"] = f"{type(err).__name__}: {err}"[:200]
    else:
        latent = (16, 12)
        x, ctx = unet_inputs(model, latent)
        try:
            if tool == "daam":
                out["nonsquare"] = daam_unet(model, x, ctx, 1)()["words"]
            elif tool == "i2am":
                out["nonsquare"] = i2am_unet(model, x, ctx, 1)()["words"]
            else:
                out["nonsquare"] = amd_run(amd_pipe_unet(model), lambda: unet_steps(model, x, ctx, 1),
                                           latent[0] * latent[1])()["full"]
        except (RuntimeError, ValueError) as err:
            out["nonsquare_error"] = f"{type(err).__name__}: {err}"[:200]
    return out


def amd_pipe_unet(model):
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=None, tokenizer=None, unet=model, scheduler=None,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", choices=sorted(MARKERS), required=True)
    ap.add_argument("--case", choices=("flux", "unet"), required=True)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.pt")
    args = ap.parse_args()
    logging.getLogger("i2am").setLevel(logging.ERROR)
    threads = pin_threads(args.threads)
    torch.set_grad_enabled(False)
    run, plain, built = tool_run(args.tool, args.case, args.steps)
    result = {}
    times = interleaved({"plain": plain, "tool": lambda: result.update(run())}, repeats=args.repeats)
    summary = compare(times, "plain")
    share = profiler_share(run, MARKERS[args.tool])
    cover = coverage(args.tool, args.case, args.steps, built)
    maps = {k: v for k, v in result.items() if isinstance(v, (torch.Tensor, dict))}
    maps.update({k: v for k, v in cover.items() if k.startswith("nonsquare") and not isinstance(v, (str, int))})
    torch.save(maps, args.out.with_suffix(".pt"))
    info = {"tool": args.tool, "case": args.case, "steps": args.steps, "threads": threads, "torch": torch.__version__,
            "plain_s": summary["plain"].as_dict(), "ratio": summary["tool"].as_dict(), "profiler_share": share,
            "blocks": result["blocks"], "bytes": result["bytes"], "batch": result.get("batch"),
            **{k: v for k, v in cover.items() if isinstance(v, (str, int))}}
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
