"""Route capture overhead on a FLUX-like transformer: plain denoising steps vs steps under ``JointAttentionCapture``
with the direct ``share`` maps alone and with the routes (``routes=("twohop",)``, ``("rollout",)``, both), same model
and inputs, one process, interleaved pairs (benchmarks/_harness.py); shapes and models as
``joint_capture_overhead.py`` (benchmarks/_models.py).

  python benchmarks/routes_overhead.py                                   # CPU, random weights
  python benchmarks/routes_overhead.py --size flux1 --device cuda --dtype bf16 --steps 2

Where the attention kernel gives each query's log-sum-exp (``stats_path`` "kernel-lse"), the two-hop route forms
only the text x reference and generated x text logits; the rollout still forms every query row of every block (all
rows of R_l are needed) and multiplies the head-mean probabilities by the carried [L, Lr] state. Printed: ms/step,
the paired ratio to plain (median, IQR), i2am's profiler share, the rollout state and the accumulators.
"""
from __future__ import annotations

import argparse

import torch
from _harness import ATTENTION_OPS, MIN_REPEATS, compare, interleaved, pin_threads, profiler_share
from _models import DTYPES, FLUX_SIZES, flux, flux_inputs, flux_steps

from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture

VARIANTS = {
    "share only": (),
    "share + twohop": ("twohop",),
    "share + rollout": ("rollout",),
    "share + twohop + rollout": ("twohop", "rollout"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=FLUX_SIZES, default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=DTYPES, default="fp32")
    ap.add_argument("--steps", type=int, default=2)
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
    held = {}

    def captured(name, routes):
        def run():
            cap = JointAttentionCapture(model, CaptureConfig(num_steps=args.steps, time_groups=1),
                                        normalisations=("share",), relations=("image:reference",), routes=routes)
            with cap:
                flux_steps(model, x, args.steps, args.device)
            held[name] = (cap.route_recorder.state_bytes(), cap.accumulator_bytes(), cap.stats_path)
        return run

    runs = {"plain": lambda: flux_steps(model, x, args.steps, args.device)}
    runs.update({name: captured(name, routes) for name, routes in VARIANTS.items()})
    summary = compare(interleaved(runs, repeats=args.repeats, device=args.device), "plain")
    plain = summary["plain"]
    print(f"{'plain':28s} {plain.median / args.steps * 1e3:9.1f} ms/step (median; IQR "
          f"{plain.q1 / args.steps * 1e3:.1f}-{plain.q3 / args.steps * 1e3:.1f})")
    for name in VARIANTS:
        share = profiler_share(runs[name], ["i2am/engine/"], args.device, ATTENTION_OPS)
        state, acc, path = held[name]
        print(f"{name:28s} {summary[name].ratio_text()} paired vs plain; i2am's own ops {100 * share:.1f} % of op "
              f"time; rollout state {state / 2**20:.1f} MiB, accumulators {acc / 2**20:.2f} MiB; {path}")


if __name__ == "__main__":
    main()
