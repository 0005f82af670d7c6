"""Video capture overhead on a Wan-2.1-like image-to-video pipeline: plain pipeline calls vs calls under
``i2am.trace`` recording the reference relation (``image:reference``, every block's CLIP-image keys) and every relation
(``image:reference`` + ``text``), same pipeline and inputs, one process, interleaved pairs (benchmarks/_harness.py).
No CFG: one transformer call per step. The condition video's VAE encoding is computed once and reused
(benchmarks/_models.py), so a call is the denoising loop plus the CLIP tower.

Shapes (benchmarks/_models.py WAN_SIZES):
  cpu      2 blocks, 2 heads x 128 (width 256), FFN 1,024; 17 frames of 192x320 -> 5 latent frames of 24x40 ->
           5 x 12 x 20 = 1,200 video tokens; 257 CLIP image tokens, 512 text tokens
  wan480p  Wan 2.1 I2V-14B: 40 blocks, 40 heads x 128 (width 5,120), FFN 13,824; 81 frames of 480x832 -> 21 latent
           frames of 60x104 -> 21 x 30 x 52 = 32,760 video tokens; the same 257 + 512 keys (a GPU: benchmarks/gpu.py)
The capture's work per block grows as video tokens x (257 or 769 keys) x width, the model's self-attention as video
tokens^2 x width: at 480p/81 frames the video is 27x longer than at "cpu", so the capture's share of a step shrinks.

Routes (two-hop, rollout) are defined for joint attention, where generated, text and reference tokens attend to one
another in one softmax; Wan's reference is a separate cross-attention (the video queries only), so there is no route
to time: the table says so.

  python benchmarks/video_overhead.py                      # CPU, random weights, 11 interleaved repeats
  python benchmarks/video_overhead.py --threads 1 --docs   # as docs/results.md was made; rewrites its table
Target: the reference relation <= 1.25x plain.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _harness import (
    I2AM_OPS,
    MIN_REPEATS,
    compare,
    interleaved,
    machine_load,
    pin_threads,
    profiler_share,
    write_doc_block,
)
from _models import DTYPES, WAN_SIZES, wan, wan_inputs, wan_steps, wan_tokens

import i2am
from i2am.engine import CaptureConfig

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "i2am.trace, image:reference"
VARIANTS = {REFERENCE: "image:reference", "i2am.trace, every relation (image:reference + text)": None}
ROUTES = "routes (two-hop, rollout)"
NO_ROUTES = "not applicable: Wan's reference is a separate cross-attention, routes are defined for joint attention"


def capture_config(pipe, relation: str | None) -> CaptureConfig:
    """One time group (the state then does not depend on the step count); ``relation`` None: every relation."""
    layers = [name for name in i2am.trace(pipe).layers if relation is None or name.startswith(f"{relation}/")]
    return CaptureConfig(time_groups=1, layers=layers)


def state_bytes(maps) -> int:
    return sum(v.numel() * v.element_size() for v in maps.raw.values())


def video_runs(pipe, x: dict, steps: int, held: dict) -> dict:
    """plain and one run per VARIANTS entry; a captured run leaves its capture's state size in held["bytes"]."""
    def captured(relation):
        cfg = capture_config(pipe, relation)

        def run():
            with i2am.trace(pipe, cfg) as tr:
                wan_steps(pipe, x, steps)
            held["bytes"] = state_bytes(tr.maps)
        return run

    runs = {"plain": lambda: wan_steps(pipe, x, steps)}
    runs.update({name: captured(relation) for name, relation in VARIANTS.items()})
    return runs


def state_by_steps(pipe, x: dict, relation: str | None, steps: tuple[int, ...]) -> dict[int, int]:
    """The capture's state after a call of each step count."""
    out = {}
    for n in steps:
        with i2am.trace(pipe, capture_config(pipe, relation)) as tr:
            wan_steps(pipe, x, n)
        out[n] = state_bytes(tr.maps)
    return out


def shape_text(size: str, s: dict) -> str:
    t = wan_tokens(s)
    return (f"Wan-2.1-like `{size}`: {s['blocks']} blocks, {s['heads']} heads x 128, FFN {s['ffn']:,}; {s['frames']} "
            f"frames of {s['height']}x{s['width']} -> {t['frames']} latent frames x {t['grid'][0]}x{t['grid'][1]} "
            f"tokens = {t['video']:,} video tokens; {t['image']} image + {t['text']} text keys")


def table(header: str, summary: dict, shares: dict, memory: dict, steps: int) -> str:
    plain = summary["plain"]
    lines = [header, "", "| variant | time | profiler share of i2am ops | capture state (2 / 4 steps) |",
             "|---|---|---|---|",
             (f"| plain | {plain.median / steps * 1e3:.0f} ms/step (IQR {plain.q1 / steps * 1e3:.0f}-"
             f"{plain.q3 / steps * 1e3:.0f}) | | |")]
    for name in VARIANTS:
        mem = " / ".join(f"{memory[name][n] / 2**20:.3f} MiB" for n in sorted(memory[name]))
        lines.append(f"| {name} | {summary[name].ratio_text()} plain, paired | {100 * shares[name]:.1f} % | {mem} |")
    lines.append(f"| {ROUTES} | {NO_ROUTES} | | |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=WAN_SIZES, default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=DTYPES, default="fp32")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core this process may "
                    "use); on a loaded machine 1 keeps the runs clear of the other jobs' threads")
    ap.add_argument("--docs", action="store_true", help="rewrite the bench-video block of docs/results.md")
    args = ap.parse_args()
    threads = pin_threads(args.threads)
    torch.set_grad_enabled(False)
    pipe, s = wan(args.size, args.device, DTYPES[args.dtype])
    x = wan_inputs(s, args.device, DTYPES[args.dtype])
    load_before = machine_load()
    held: dict = {}
    runs = video_runs(pipe, x, args.steps, held)
    summary = compare(interleaved(runs, repeats=args.repeats, device=args.device), "plain")
    shares = {name: profiler_share(runs[name], I2AM_OPS, args.device) for name in VARIANTS}
    memory = {name: state_by_steps(pipe, x, relation, (2, 4)) for name, relation in VARIANTS.items()}
    header = (f"{shape_text(args.size, s)}. {args.device}, {args.dtype}, {args.steps} steps per call, "
              f"{args.repeats} interleaved pairs after a warm-up, torch threads pinned at {threads}, torch "
              f"{torch.__version__}; {load_before} before the runs, {machine_load()} after.")
    text = table(header, summary, shares, memory, args.steps)
    print(text)
    if args.docs:
        write_doc_block(REPO / "docs" / "results.md", "bench-video", text)


if __name__ == "__main__":
    main()
