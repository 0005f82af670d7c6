"""Route capture overhead on a FLUX-like transformer: plain denoising steps vs steps under ``JointAttentionCapture``
with the direct ``share`` maps alone and with the routes (``routes=("twohop",)``, ``("rollout",)``, both), same model
and inputs, one process; shapes and models as ``joint_capture_overhead.py`` (whose builders this reuses).

  python benchmarks/routes_overhead.py                                   # CPU, random weights
  python benchmarks/routes_overhead.py --size flux1 --device cuda --dtype bf16 --steps 2

The rollout recomputes every query row of every block (all rows of R_l are needed) and multiplies the head-mean
probabilities by the carried [L, Lr] state; the two-hop route recomputes the generated rows' softmax (kept apart from
the share pass) and adds the text rows. Printed: ms/step, the ratio to plain (median of paired runs), the rollout
state and the accumulators.
"""
from __future__ import annotations

import argparse

import torch
from joint_capture_overhead import DTYPES, SIZES, build, inputs, median, run_steps

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
    ap.add_argument("--size", choices=SIZES, default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=DTYPES, default="fp32")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model, s = build(args.size, args.device, DTYPES[args.dtype])
    x = inputs(model, s, args.device, DTYPES[args.dtype])
    print(f"size={args.size} device={args.device} dtype={args.dtype} blocks={s['layers']}+{s['single']} "
          f"heads={s['heads']}x128 tokens={s['text'] + 2 * s['grid'] ** 2} (text {s['text']}, generated "
          f"{s['grid']}^2, reference {s['grid']}^2) steps={args.steps} threads={torch.get_num_threads()}")
    run_steps(model, x, 1, args.device)   # warm-up
    plains, ratios, states = [], {name: [] for name in VARIANTS}, {}
    for _ in range(args.repeats):   # plain and captured runs alternate; each ratio is taken within its pair
        for name, routes in VARIANTS.items():
            plain = run_steps(model, x, args.steps, args.device)
            cap = JointAttentionCapture(model, CaptureConfig(num_steps=args.steps, time_groups=1),
                                        normalisations=("share",), relations=("image:reference",), routes=routes)
            with cap:
                captured = run_steps(model, x, args.steps, args.device)
            plains.append(plain)
            ratios[name].append(captured / plain)
            states[name] = (cap.route_recorder.state_bytes(), cap.accumulator_bytes())
    print(f"{'plain':28s} {median(plains) / args.steps * 1e3:9.1f} ms/step (median)")
    for name, values in ratios.items():
        state, acc = states[name]
        print(f"{name:28s} {median(values):6.2f}x plain (median of {len(values)} paired runs; {min(values):.2f}-"
              f"{max(values):.2f})  rollout state {state / 2**20:.1f} MiB, accumulators {acc / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
