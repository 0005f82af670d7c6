"""The study checkpoints: kept intermediate checkpoints of the run that made a shipped toy checkpoint ``NAME``, for the
IMACS-vs-quality study, shipped as ``NAME-step<N>.qdelta`` (docs/toy_world.md).

Each stores its step's weights as a quantised delta against the shipped ``NAME.safetensors``
(``i2am.adapters._delta_checkpoint``: int8 codes in [-levels, levels] per output channel, xz-compressed); the
dequantised model is the study's model. Its card states the quantisation, its weight error and the held-out SSIM
of both the dequantised model and the full-precision checkpoint it stands for.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from i2am.adapters import create_model
from i2am.adapters._delta_checkpoint import DELTA_SUFFIX, encode_delta, read_delta
from i2am.pretrained import TOY_DIR, toy_card, toy_names
from i2am.pretrained.export import (
    checkpoint_weights,
    heldout_means,
    run_checkpoint,
    sha256,
    toy_world,
    train_command,
    train_run,
)
from i2am.pretrained.heldout import SAMPLER, heldout_batch

# Quantisation levels each side of zero by default: 15 codes, about 0.51 MB a file for custom-toy, so that 11 fit the
# package budget; 15 levels (about 0.66 MB) lose less held-out SSIM where the weights are far from the final ones
# (early steps). Measured on custom's body_surface run: docs/toy_world.md, "Study checkpoints".
STUDY_LEVELS = 7


def stored_as(base: str, levels: int) -> str:
    return (f"quantised delta against {base}.safetensors: int8 codes in [-{levels}, {levels}] times a float32 scale "
            f"per output channel (its largest |difference| / {levels}), xz-compressed; loads into a float32 model")


def study_names(base: str = "custom", toy_dir: Path = TOY_DIR) -> list[str]:
    """The shipped study checkpoints of ``base``'s run (``base-step<N>``), in training-step order."""
    names = [n for n in toy_names(toy_dir) if n.startswith(f"{base}-step")
             and (toy_dir / f"{n}{DELTA_SUFFIX}").is_file()]
    return sorted(names, key=lambda n: toy_card(n, toy_dir)["global_step"])


def relative_error(weights: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                   base: dict[str, torch.Tensor]) -> float:
    """|weights - reference| / |reference - base| over all tensors (Frobenius): the quantisation error relative to
    the delta it encodes."""
    error = sum(float((weights[k].float() - reference[k].float()).square().sum()) for k in reference)
    delta = sum(float((reference[k].float() - base[k].float()).square().sum()) for k in reference)
    return (error / delta) ** 0.5 if delta else 0.0


def export_study(base: str, run_dir: str | Path, steps: list[int], levels: int = STUDY_LEVELS,
                 out_dir: Path = TOY_DIR, data_dir: str | Path = "data", heldout_count: int = 4) -> list[Path]:
    """Write ``base-step<N>.qdelta`` and its card for each of ``steps`` (kept ``step=<N>.ckpt`` files of the run
    in ``run_dir``), against the shipped ``out_dir/base.safetensors``."""
    base_file = Path(out_dir) / f"{base}.safetensors"
    if not base_file.is_file():
        raise FileNotFoundError(f"{base_file} not found: the study checkpoints are deltas against it; export it first "
                                f"(python -m i2am.pretrained.export {base} {run_dir} --step <final step>)")
    run, config = train_run(run_dir)
    world = toy_world(config)
    batch = heldout_batch(data_dir, heldout_count, world)
    model = create_model(config.model.name)
    model.load_checkpoint(base_file)
    base_weights = {k: v.clone() for k, v in model.state_dict().items()}
    paths = []
    for step in steps:
        checkpoint = run_checkpoint(run, step)
        model.load_checkpoint(checkpoint_weights(checkpoint))
        full = {k: v.clone() for k, v in model.state_dict().items()}
        full_heldout = heldout_means(model, batch)
        path = Path(out_dir) / f"{base}-step{step}{DELTA_SUFFIX}"
        path.write_bytes(encode_delta(full, base_file, levels))
        model.load_checkpoint(path)   # score what ships: the dequantised model
        card = {
            "name": path.stem, "model": config.model.name, "stored": stored_as(base, levels),
            "global_step": torch.load(checkpoint, map_location="cpu", weights_only=False).get("global_step"),
            "command": train_command(base, config) + f"  # its step={step}.ckpt",
            "export": f"python -m i2am.pretrained.export {base} {run_dir} --steps {step} --levels {levels}",
            "quantisation": {"base": base_file.name, "base_sha256": sha256(base_file), "levels": levels,
                             "relative_weight_error": relative_error(read_delta(path), full, base_weights)},
            "heldout": {"pairs": heldout_count, "sampler": SAMPLER, "world": world, **heldout_means(model, batch),
                        "full_precision": full_heldout},
            "bytes": path.stat().st_size, "sha256": sha256(path),
        }
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        paths.append(path)
    return paths
