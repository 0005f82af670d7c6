"""``python -m i2am.pretrained.export NAME RUN_DIR [--step N]``: write a finished ``i2am train`` run's checkpoint as
the shipped toy checkpoint ``i2am/pretrained/toy/NAME.safetensors`` and its card ``NAME.json``.

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
from safetensors.torch import save_file

from i2am.adapters import create_model
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


def export(name: str, run_dir: str | Path, step: int | None = None, out_dir: Path = TOY_DIR,
           data_dir: str | Path = "data", heldout_count: int = 4, live: bool = False) -> Path:
    run = RunDir(run_dir)
    config = run.load_config()
    if config is None:
        raise FileNotFoundError(f"{run.config_file} not found: {run_dir} is not an i2am train run")
    checkpoint = run.last_checkpoint() if step is None else run.step_checkpoints().get(step)
    if checkpoint is None:
        raise FileNotFoundError(f"{run.checkpoint_dir}: no {'last.ckpt' if step is None else f'step={step}.ckpt'}")
    model_name = config.model.name
    model = create_model(model_name)
    model.load_checkpoint(checkpoint_weights(checkpoint, live))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    save_file(shipped_state(model), str(path), metadata={"model": model_name, "stored": STORED})
    model.load_checkpoint(path)   # score what ships: the float16 round trip
    scores = heldout_scores(model.eval(), heldout_batch(data_dir, heldout_count))
    global_step = torch.load(checkpoint, map_location="cpu", weights_only=False).get("global_step")
    experiment = config.get("experiment_name") or f"toy_pretrain_{name.split('-step')[0]}"
    card = {
        "name": name, "model": model_name, "stored": STORED, "global_step": global_step,
        "command": f"i2am train experiment={experiment}" + (f"  # its step={step}.ckpt" if step else ""),
        "export": f"python -m i2am.pretrained.export {name} {run_dir}" + (f" --step {step}" if step else "")
                  + (" --live" if live else ""),
        "training_metrics": run.read_metrics() if run.is_finished() else None,
        "heldout": {"pairs": heldout_count, "sampler": SAMPLER,
                    **{key: float(scores[key].mean()) for key in ("ssim", "ssim_region", "ssim_mean_colour")}},
        "bytes": path.stat().st_size, "sha256": sha256(path),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("run_dir")
    parser.add_argument("--step", type=int, default=None, help="a kept step=<N>.ckpt instead of last.ckpt")
    parser.add_argument("--data-dir", default="data", help="where the toy world is (written on first use)")
    parser.add_argument("--live", action="store_true",
                        help="the live weights of a run trained with EMA, not the average the checkpoint holds")
    args = parser.parse_args(argv)
    path = export(args.name, args.run_dir, args.step, data_dir=args.data_dir, live=args.live)
    print(path, json.dumps(json.loads(path.with_suffix(".json").read_text())["heldout"]))


if __name__ == "__main__":
    main()
