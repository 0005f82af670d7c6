"""i2am next to its peers on equal work: each tool in its own process (benchmarks/peer_worker.py), i2am with the
project's python, attention-map-diffusers 1.0 and DAAM 0.2.0 with the peers' venv (``make bench-peers`` builds it),
then their maps compared and one Markdown table written (and, with --docs, put into docs/results.md).

  make bench-peers                                              # builds .venv-peers, runs this, updates the docs
  python benchmarks/peers.py --steps 1 --repeats 3 --out outputs/bench-peers     # a quick look
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from _harness import write_doc_block

REPO = Path(__file__).resolve().parents[1]
JOBS = [("flux", "i2am"), ("flux", "amd"), ("unet", "i2am"), ("unet", "daam"), ("unet", "amd")]
LABELS = {("flux", "i2am"): "i2am `share:text`", ("flux", "amd"): "attention-map-diffusers 1.0 `image->text`",
          ("unet", "i2am"): "i2am SRAM word maps (G2R)", ("unet", "daam"): "DAAM 0.2.0 heat maps",
          ("unet", "amd"): "attention-map-diffusers 1.0 `image->text`"}


def run_job(case: str, tool: str, python: str, args, out: Path) -> dict | None:
    prefix = out / f"{tool}_{case}"
    cmd = [python, str(REPO / "benchmarks" / "peer_worker.py"), "--tool", tool, "--case", case,
           "--steps", str(args.steps), "--repeats", str(args.repeats), "--out", str(prefix)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if not args.tables_only:
        print("$", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return None
    if not prefix.with_suffix(".json").exists():
        return None
    info = json.loads(prefix.with_suffix(".json").read_text())
    info["maps"] = torch.load(prefix.with_suffix(".pt"))
    return info


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def words_from_full(full: dict, grid: tuple[int, int], row: int) -> dict:
    """attention-map-diffusers' [B, Lq, T] of one batch row as word maps [T, h, w] on the layer's own grid (the
    UNet's stride-2 convolutions round odd sides up)."""
    out = {}
    for name, f in full.items():
        h, w = next((-(-grid[0] // s), -(-grid[1] // s)) for s in (1, 2, 4, 8, 16)
                    if -(-grid[0] // s) * -(-grid[1] // s) == f.shape[1])
        out[name] = f[row].T.reshape(f.shape[2], h, w)
    return out


def agreement(case: str, tool: str, results: dict) -> tuple[str, str]:
    """(map vs i2am on the benchmark's inputs, on a non-square grid) for one peer."""
    mine, ref = results.get((case, tool)), results.get((case, "i2am"))
    if mine is None or ref is None:
        return "not run", "not run"
    if tool == "i2am":
        return "-", "supported" if "nonsquare" in ref["maps"] else ref.get("nonsquare_error", "?")
    if case == "flux":
        same = all(torch.equal(mine["maps"][k][n], ref["maps"][k][n]) for k in ("r2g", "g2r") for n in ref["maps"][k])
        diff = max(max_diff(ref["maps"]["r2g"], mine["maps"]["r2g"]), max_diff(ref["maps"]["g2r"], mine["maps"]["g2r"]))
        square = "bitwise equal" if same else f"max abs diff {diff:.1e}"
        if "nonsquare" not in mine["maps"]:
            return square, mine.get("nonsquare_error", "no maps")
        return square, f"max abs diff {max_diff(ref['maps']['nonsquare'], mine['maps']['nonsquare']):.1e}"
    if tool == "amd":   # its maps keep both CFG rows; row 1 is the conditional one
        cond = words_from_full(mine["maps"]["full"], (16, 16), row=1)
        nonsq = ("max abs diff "
                 f"{max_diff(ref['maps']['nonsquare'], words_from_full(mine['maps']['nonsquare'], (16, 12), 1)):.1e}"
                 if "nonsquare" in mine["maps"] else mine.get("nonsquare_error", "no maps"))
        return f"max abs diff {max_diff(ref['maps']['words'], cond):.1e} (conditional row)", nonsq
    nonsq = (f"max abs diff {max_diff(ref['maps']['nonsquare'], mine['maps']['nonsquare']):.1e}"
             if "nonsquare" in mine["maps"] else f"fails: {mine.get('nonsquare_error', 'no maps')}")
    return f"max abs diff {max_diff(ref['maps']['words'], mine['maps']['words']):.1e}", nonsq


CFG = {"flux": {"i2am": "no CFG in this case", "amd": "no CFG in this case"},
       "unet": {"i2am": "conditional row only", "daam": "second half of the batch (assumes unconditional first)",
                "amd": "both rows returned, unselected"}}


def table(results: dict, args) -> str:
    rows = [("| case | tool, relation | blocks recorded | CFG rows | map vs i2am | non-square grid | plain s/run "
            "(median, IQR) | tool / plain, paired median (IQR) | profiler share of own ops | map memory |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for case, tool in JOBS:
        r = results.get((case, tool))
        if r is None:
            rows.append(f"| {case} | {LABELS[case, tool]} | not run | | | | | | | |")
            continue
        blocks = f"{r['blocks']}" + (f" (of {r['blocks_total']}; left to choose: {r.get('blocks_all', r['blocks'])})"
                                     if case == "flux" else " layers")
        same, nonsq = agreement(case, tool, results)
        p, q = r["plain_s"], r["ratio"]
        memory = f"{r['bytes'] / 2**20:.2f} MiB" + (" (q/k, grows with steps)" if tool == "amd" else "")
        rows.append(f"| {case} | {LABELS[case, tool]} | {blocks} | {CFG[case][tool]} | {same} | {nonsq} | "
                    f"{p['median']:.2f} ({p['q1']:.2f}-{p['q3']:.2f}) | {q['median']:.3f}x "
                    f"({q['q1']:.3f}-{q['q3']:.3f}) | {100 * r['profiler_share']:.1f} % | {memory} |")
    return "\n".join(rows)


def memory_table(mem: dict) -> str:
    """Map memory fitted on the smallest run of benchmarks/map_memory.py, checked on the others, extrapolated."""
    from map_memory import KONTEXT, SD15_STEPS
    mib = 2**20
    heads, real_blocks = KONTEXT["heads"], KONTEXT["real_double"] + KONTEXT["real_single"]
    rows = [("| model | tool | measured (double+single blocks, steps: MiB) | formula | largest miss of the formula on "
            "the other runs | at real size |"), "|---|---|---|---|---|---|"]
    for tool, key, label in (("i2am", "all", "i2am, every relation, both normalisations"),
                             ("i2am", "one", "i2am, image:reference (I2AM)"),
                             ("amd", "all", "attention-map-diffusers 1.0, image->text")):
        if tool not in mem:
            continue
        runs = mem[tool]["flux"]
        if tool == "i2am":
            units = [(r["double"] + r["single"]) * heads for r in runs]
            formula, real = "blocks x heads x b", real_blocks * KONTEXT["real_heads"]
        else:
            units = [r["steps"] * r["double"] * heads for r in runs]
            formula = "steps x double blocks x heads x b"
            real = KONTEXT["steps"] * KONTEXT["real_double"] * KONTEXT["real_heads"]
        b = runs[0][key] / units[0]
        miss = max(abs(u * b - r[key]) / r[key] for u, r in zip(units[1:], runs[1:]))
        measured = ", ".join(f"{r['double']}+{r['single']}, {r['steps']}: {r[key] / mib:.2f}" for r in runs)
        rows.append(f"| FLUX.1 Kontext 1024², 1 reference, {KONTEXT['steps']} steps | {label} | {measured} | "
                    f"{formula}, b = {b / 1024:.1f} KiB | {100 * miss:.1f} % | {real * b / mib:,.1f} MiB |")
    for tool in ("i2am", "amd"):
        if tool not in mem:
            continue
        one, two = mem[tool]["sd15"]
        grows = tool == "amd"
        b = one["all"]
        predicted = 2 * b if grows else b
        real = SD15_STEPS * b if grows else b
        label = "attention-map-diffusers 1.0, image->text" if grows else "i2am, text, R2G + G2R"
        rows.append(f"| SD-1.5 512², CFG, {SD15_STEPS} steps | {label} | "
                    f"1 step: {one['all'] / mib:.2f}, 2 steps: {two['all'] / mib:.2f} | "
                    f"{'steps x b' if grows else 'b (fixed)'}, b = {b / mib:.2f} MiB | "
                    f"{100 * abs(predicted - two['all']) / two['all']:.1f} % | {real / mib:,.1f} MiB |")
    return "\n".join(rows)


def run_memory(args) -> dict:
    mem = {}
    for tool, python in (("i2am", sys.executable), ("amd", args.peers_python)):
        out = args.out / f"memory_{tool}.json"
        if not args.tables_only:
            cmd = [python, str(REPO / "benchmarks" / "map_memory.py"), "--tool", tool, "--out", str(out)]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=False, cwd=REPO)
        if out.exists():
            mem[tool] = json.loads(out.read_text())
    return mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers-python", default=str(REPO / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench-peers")
    ap.add_argument("--docs", action="store_true", help="replace the peers table in docs/results.md")
    ap.add_argument("--tables-only", action="store_true", help="tabulate the results already in --out")
    ap.add_argument("--no-memory", action="store_true", help="skip the map memory at real sizes")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not Path(args.peers_python).exists():
        sys.exit(f"{args.peers_python} does not exist: `make bench-peers` builds the peers' venv (.venv-peers), "
                 "or pass --peers-python")
    results = {}
    for case, tool in JOBS:
        info = run_job(case, tool, sys.executable if tool == "i2am" else args.peers_python, args, args.out)
        if info is not None:
            results[case, tool] = info
    r = next(iter(results.values()))
    text = (f"{args.steps} steps per run, {args.repeats} interleaved pairs after a warm-up, {r['threads']} pinned "
            f"threads, torch {r['torch']}; each tool in its own process.\n\n" + table(results, args))
    if not args.no_memory:
        text += "\n\nMap memory (benchmarks/map_memory.py):\n\n" + memory_table(run_memory(args))
    (args.out / "peers.md").write_text(text + "\n")
    (args.out / "peers.json").write_text(json.dumps(
        {f"{c}/{t}": {k: v for k, v in i.items() if k != "maps"} for (c, t), i in results.items()}, indent=1))
    print(text)
    if args.docs:
        write_doc_block(REPO / "docs" / "results.md", "bench-peers", text)


if __name__ == "__main__":
    main()
