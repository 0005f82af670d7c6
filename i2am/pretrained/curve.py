"""``python -m i2am.pretrained.curve RUN_DIR [--pairs N]``: held-out quality of every kept checkpoint of a toy
``i2am train`` run (its ``step=<N>.ckpt`` files and ``last.ckpt``), with the shipped checkpoints' sampler settings.

Writes ``RUN_DIR/heldout_curve_p<N>.csv`` (step, ssim, ssim_region, ssim_mean_colour: means over the pairs) and
``RUN_DIR/heldout_curve_p<N>.png`` (both SSIMs against the training step, the mean-colour fill as a line). A point
that is already in the CSV is not scored again, so the curve can be extended while the run goes on.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from tqdm import tqdm

from i2am.adapters import create_model
from i2am.pretrained.export import checkpoint_weights
from i2am.pretrained.heldout import heldout_batch, heldout_scores
from i2am.runs import RunDir

FIELDS = ("step", "ssim", "ssim_region", "ssim_mean_colour")


def read_curve(path: Path) -> dict[int, dict[str, float]]:
    if not path.is_file():
        return {}
    with path.open() as f:
        return {int(row["step"]): {k: float(row[k]) for k in FIELDS[1:]} for row in csv.DictReader(f)}


def write_curve(path: Path, points: dict[int, dict[str, float]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for step in sorted(points):
            writer.writerow({"step": step, **points[step]})


def plot_curve(path: Path, points: dict[int, dict[str, float]], title: str) -> None:
    from i2am.viz.canvas import new_figure, save_figure

    steps = sorted(points)
    fig = new_figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    ax.plot(steps, [points[s]["ssim"] for s in steps], "o-", label="generated image")
    ax.plot(steps, [points[s]["ssim_region"] for s in steps], "s-", label="generated region pasted into GT")
    ax.axhline(points[steps[0]]["ssim_mean_colour"], color="grey", ls="--", label="mean-colour fill (GT outside)")
    ax.set(xlabel="training step", ylabel="SSIM to the ground truth", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def heldout_curve(run_dir: str | Path, pairs: int = 8, data_dir: str | Path = "data", every: int = 1
                  ) -> dict[int, dict[str, float]]:
    """Score the run's kept checkpoints whose step is a multiple of ``every`` (and its last one)."""
    run = RunDir(run_dir)
    config = run.load_config()
    if config is None:
        raise FileNotFoundError(f"{run.config_file} not found: {run_dir} is not an i2am train run")
    checkpoints = {step: path for step, path in run.step_checkpoints().items() if step % every == 0}
    last = run.last_checkpoint()
    if last is not None:
        checkpoints.setdefault(int(torch.load(last, map_location="cpu", weights_only=False)["global_step"]), last)
    if not checkpoints:
        raise FileNotFoundError(f"{run.checkpoint_dir}: no step=<N>.ckpt or last.ckpt to score")
    csv_path = Path(run_dir) / f"heldout_curve_p{pairs}.csv"
    points = read_curve(csv_path)
    batch = heldout_batch(data_dir, pairs)
    model = create_model(config.model.name).eval()
    for step in tqdm(sorted(set(checkpoints) - set(points)), desc="held-out SSIM per checkpoint"):
        model.load_checkpoint(checkpoint_weights(checkpoints[step]))
        scores = heldout_scores(model, batch)
        points[step] = {key: float(scores[key].mean()) for key in FIELDS[1:]}
        write_curve(csv_path, points)   # each point is kept as soon as it is scored
    plot_curve(csv_path.with_suffix(".png"), points, f"{Path(run_dir).name}: {pairs} held-out pairs")
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--pairs", type=int, default=8, help="held-out test pairs scored per checkpoint")
    parser.add_argument("--data-dir", default="data", help="where the toy world is (written on first use)")
    parser.add_argument("--every", type=int, default=1, help="only the kept steps that are multiples of this")
    args = parser.parse_args(argv)
    for step, point in sorted(heldout_curve(args.run_dir, args.pairs, args.data_dir, args.every).items()):
        print(step, " ".join(f"{k}={v:.4f}" for k, v in point.items()))


if __name__ == "__main__":
    main()
