"""Joint-attention capture overhead on a FLUX-like transformer: plain denoising steps vs steps under
``JointAttentionCapture``, same model and inputs, one process, interleaved pairs (benchmarks/_harness.py).
The peers (attention-map-diffusers, DAAM) are compared on equal work by benchmarks/peers.py (`make bench-peers`).

Shapes (tokens: text + generated + one reference, as FLUX.1 Kontext packs a 1024x1024 edit at size "flux1"):
  cpu    2 double + 4 single blocks, 4 heads x 128, 64 text + 32x32 generated + 32x32 reference tokens
  flux1  19 double + 38 single blocks, 24 heads x 128, 512 text + 64x64 generated + 64x64 reference tokens

  python benchmarks/joint_capture_overhead.py                       # CPU, random weights
  python benchmarks/joint_capture_overhead.py --size flux1 --device cuda --dtype bf16 --steps 4
Targets: one relation <= 1.05x plain, ``share`` <= 1.10x, every relation with both normalisations
<= 1.20x. The profiler share (i2am's own operations over all operations; the attention kernel the capture's
pass-through runs counts as the model's) changes little with the machine's load; the paired ratios do.
"""
from __future__ import annotations

import argparse

import torch
from _harness import ATTENTION_OPS, MIN_REPEATS, compare, interleaved, pin_threads, profiler_share
from _models import DTYPES, FLUX_SIZES, flux, flux_inputs, flux_steps

from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture

VARIANTS = {
    "i2am, image:reference": dict(relations=("image:reference",), normalisations=("i2am",)),
    "i2am, text": dict(relations=("text",), normalisations=("i2am",)),
    "share, image:reference": dict(relations=("image:reference",), normalisations=("share",)),
    "all relations, both normalisations": {},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=FLUX_SIZES, default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=DTYPES, default="fp32")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS)
    args = ap.parse_args()
    threads = pin_threads()
    torch.set_grad_enabled(False)
    model, s = flux(args.size)
    model = model.to(args.device, DTYPES[args.dtype])
    x = flux_inputs(model, s, reference=True, device=args.device, dtype=DTYPES[args.dtype])
    print(f"size={args.size} device={args.device} dtype={args.dtype} blocks={s['layers']}+{s['single']} "
          f"heads={s['heads']}x128 tokens={s['text'] + 2 * s['grid'] ** 2} (text {s['text']}, generated "
          f"{s['grid']}^2, reference {s['grid']}^2) steps={args.steps} threads={threads}")
    sizes = {}

    def captured(name, kw, extra_steps=0):
        def run():
            cap = JointAttentionCapture(model, CaptureConfig(num_steps=2 * args.steps, time_groups=1), **kw)
            with cap:
                flux_steps(model, x, args.steps, args.device)
                sizes[name] = [cap.accumulator_bytes()]
                if extra_steps:
                    flux_steps(model, x, extra_steps, args.device)
                    sizes[name].append(cap.accumulator_bytes())
        return run

    runs = {"plain": lambda: flux_steps(model, x, args.steps, args.device)}
    runs.update({name: captured(name, kw) for name, kw in VARIANTS.items()})
    summary = compare(interleaved(runs, repeats=args.repeats, device=args.device), "plain")
    first = next(iter(VARIANTS))   # memory, untimed: N more steps, the same accumulators
    captured(first, VARIANTS[first], extra_steps=args.steps)()
    after_2n = sizes[first][1]
    plain = summary["plain"]
    print(f"{'plain':40s} {plain.median / args.steps * 1e3:9.1f} ms/step (median; IQR "
          f"{plain.q1 / args.steps * 1e3:.1f}-{plain.q3 / args.steps * 1e3:.1f})")
    for name in VARIANTS:
        share = profiler_share(runs[name], ["i2am/engine/"], args.device, ATTENTION_OPS)
        growth = f", {after_2n / 2**20:.2f} MiB after 2N steps" if name == first else ""
        print(f"{name:40s} {summary[name].ratio_text()} paired vs plain; i2am's own ops {100 * share:.1f} % of op "
              f"time; accumulators {sizes[name][0] / 2**20:.2f} MiB{growth}")


if __name__ == "__main__":
    main()
