"""``python -m i2am.pretrained.generations [--pairs N] [--out PATH]``: the shipped toy checkpoints' generations on the
first held-out toy pairs, with the cards' sampler settings: one row per pair (the reference, the ground truth, then
each checkpoint's generated image), each checkpoint's mean SSIM to the ground truth in its column title. It draws
``docs/assets/toy_generations.png`` (docs/toy_world.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from i2am.adapters import create_model
from i2am.data import schema
from i2am.pretrained import toy_checkpoint
from i2am.pretrained.heldout import heldout_batch, heldout_scores
from i2am.viz.plot import as_image

CHECKPOINTS = ("custom-step200", "custom", "refined", "control")


def plot_generations(out: str | Path, names: tuple[str, ...] = CHECKPOINTS, pairs: int = 4,
                     data_dir: str | Path = "data") -> dict[str, float]:
    """Draw the figure to ``out``; returns each checkpoint's mean SSIM over the pairs."""
    from i2am.viz.canvas import new_figure, save_figure

    batch = heldout_batch(data_dir, pairs)
    generated, ssim = {}, {}
    for name in names:
        scores = heldout_scores(create_model("custom-toy", checkpoint=toy_checkpoint(name)).eval(), batch)
        generated[name], ssim[name] = scores["images"], float(scores["ssim"].mean())
    titles = ["reference", "ground truth"] + [f"{name} ({ssim[name]:.2f})" for name in names]
    fig = new_figure(figsize=(2 * len(titles), 2.6 * pairs))
    axes = fig.subplots(pairs, len(titles), squeeze=False)
    for i in range(pairs):
        row = [batch[schema.REFERENCE][i], batch[schema.IMAGE][i]] + [generated[name][i] for name in names]
        for j, image in enumerate(row):
            axes[i, j].imshow(as_image(image), interpolation="nearest")
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(titles[j], fontsize=9, loc="left")
    fig.tight_layout(pad=0.2)
    save_figure(fig, Path(out), dpi=96)
    return ssim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="held-out test pairs, one row each")
    parser.add_argument("--out", default="docs/assets/toy_generations.png")
    parser.add_argument("--data-dir", default="data", help="where the toy world is (written on first use)")
    args = parser.parse_args(argv)
    for name, value in plot_generations(args.out, pairs=args.pairs, data_dir=args.data_dir).items():
        print(f"{name}: SSIM {value:.3f}")


if __name__ == "__main__":
    main()
