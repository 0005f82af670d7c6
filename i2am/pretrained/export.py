"""``python -m i2am.pretrained.export NAME RUN_DIR [--step N]``: write a finished ``i2am train`` run's checkpoint as
the shipped toy checkpoint ``i2am/pretrained/toy/NAME.safetensors`` and its card ``NAME.json``.
``--steps 100,200,...``: write the run's study checkpoints instead (``i2am.pretrained.study``: ``NAME-step<N>.qdelta``,
quantised deltas against the shipped ``NAME.safetensors``, which must be exported first).

Every tensor is stored as float16 (half the size, so that the four shipped files stay under 10 MB; the card records
the held-out SSIM measured *after* the round trip, which is what a user gets: the file loads into a float32 model).
Loading a file and storing the model again gives the same tensors, bit for bit
(tests/unit/pretrained/test_pretrained_toy.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from i2am.adapters import create_model
from i2am.data.toy.vitonhd import DEFAULT_WORLD
from i2am.pretrained import TOY_DIR
from i2am.pretrained.heldout import SAMPLER, heldout_batch, heldout_scores
from i2am.runs import RunDir

STORED = "float16 (every tensor; loaded into a float32 model)"


def shipped_state(model) -> dict[str, torch.Tensor]:
    """The adapter's state dict as shipped: float16, contiguous."""
    return {k: v.half().contiguous().clone() for k, v in model.state_dict().items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_weights(checkpoint: Path, live: bool = False) -> dict[str, torch.Tensor]:
    """A Lightning checkpoint's ``state_dict``; ``live``: the live weights a weight-averaging callback (EMA) moved to
    ``current_model_state`` when it put its average into ``state_dict``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    key = "current_model_state" if live else "state_dict"
    if key not in state:
        raise KeyError(f"{checkpoint} has no {key!r} (live=True needs a run trained with a weight-averaging callback)")
    return state[key]


def train_run(run_dir: str | Path):
    """(RunDir, its config) of an ``i2am train`` run folder."""
    run = RunDir(run_dir)
    config = run.load_config()
    if config is None:
        raise FileNotFoundError(f"{run.config_file} not found: {run_dir} is not an i2am train run")
    return run, config


def run_checkpoint(run: RunDir, step: int | None) -> Path:
    """The run's ``step=<step>.ckpt``, or its ``last.ckpt`` for ``step=None``."""
    checkpoint = run.last_checkpoint() if step is None else run.step_checkpoints().get(step)
    if checkpoint is None:
        raise FileNotFoundError(f"{run.checkpoint_dir}: no {'last.ckpt' if step is None else f'step={step}.ckpt'}")
    return checkpoint


def toy_world(config) -> str:
    """The toy world version the run trained on (``data.toy.world``; the default world when it names none)."""
    return OmegaConf.select(config, "data.toy.world", default=DEFAULT_WORLD)


def train_command(name: str, config) -> str:
    """The ``i2am train`` command of the run (its recipe, and the toy world when it is not the default)."""
    experiment = config.get("experiment_name") or f"toy_pretrain_{name.split('-step')[0]}"
    world = toy_world(config)
    return f"i2am train experiment={experiment}" + (f" data.toy.world={world}" if world != DEFAULT_WORLD else "")


def heldout_means(model, batch: dict) -> dict[str, float]:
    scores = heldout_scores(model.eval(), batch)
    return {key: float(scores[key].mean()) for key in ("ssim", "ssim_region", "ssim_mean_colour")}


def export(name: str, run_dir: str | Path, step: int | None = None, out_dir: Path = TOY_DIR,
           data_dir: str | Path = "data", heldout_count: int = 4, live: bool = False) -> Path:
    run, config = train_run(run_dir)
    checkpoint = run_checkpoint(run, step)
    model_name = config.model.name
    model = create_model(model_name)
    model.load_checkpoint(checkpoint_weights(checkpoint, live))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    save_file(shipped_state(model), str(path), metadata={"model": model_name, "stored": STORED})
    model.load_checkpoint(path)   # score what ships: the float16 round trip
    world = toy_world(config)
    heldout = heldout_means(model, heldout_batch(data_dir, heldout_count, world))
    global_step = torch.load(checkpoint, map_location="cpu", weights_only=False).get("global_step")
    card = {
        "name": name, "model": model_name, "stored": STORED, "global_step": global_step,
        "command": train_command(name, config) + (f"  # its step={step}.ckpt" if step else ""),
        "export": f"python -m i2am.pretrained.export {name} {run_dir}" + (f" --step {step}" if step else "")
                  + (" --live" if live else ""),
        "training_metrics": run.read_metrics() if run.is_finished() else None,
        "heldout": {"pairs": heldout_count, "sampler": SAMPLER, "world": world, **heldout},
        "bytes": path.stat().st_size, "sha256": sha256(path),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    from i2am.pretrained.study import STUDY_LEVELS, export_study  # it builds on this module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("run_dir")
    parser.add_argument("--step", type=int, default=None, help="a kept step=<N>.ckpt instead of last.ckpt")
    parser.add_argument("--steps", type=lambda text: [int(s) for s in text.split(",")], default=None,
                        help="write the study checkpoints NAME-step<N> of these kept steps (comma-separated)")
    parser.add_argument("--levels", type=int, default=STUDY_LEVELS,
                        help="--steps: quantisation levels each side of zero (int8 codes in [-levels, levels])")
    parser.add_argument("--data-dir", default="data", help="where the toy world is (written on first use)")
    parser.add_argument("--live", action="store_true",
                        help="the live weights of a run trained with EMA, not the average the checkpoint holds")
    parser.add_argument("--out-dir", type=Path, default=TOY_DIR, help="where to write (default: the package's)")
    parser.add_argument("--pairs", type=int, default=4, help="held-out toy test pairs the cards' SSIMs average")
    args = parser.parse_args(argv)
    where = {"out_dir": args.out_dir, "data_dir": args.data_dir, "heldout_count": args.pairs}
    if args.steps is not None:
        paths = export_study(args.name, args.run_dir, args.steps, levels=args.levels, **where)
    else:
        paths = [export(args.name, args.run_dir, args.step, live=args.live, **where)]
    for path in paths:
        print(path, json.dumps(json.loads(path.with_suffix(".json").read_text())["heldout"]))


if __name__ == "__main__":
    main()
