"""Pretrained toy checkpoints shipped inside the package (``i2am/pretrained/toy/``, docs/toy_world.md).

Each ``<name>.safetensors`` is a custom-toy adapter state dict stored as float16 (it loads into a float32 model)
next to ``<name>.json``: the model preset, the reproducing command, the training run's figures and the held-out
metrics measured after the float16 round trip, when it was exported (``i2am.pretrained.export``). The study
checkpoints ``custom-step<N>.qdelta`` are intermediate checkpoints of custom's run stored as quantised deltas against
``custom.safetensors`` (``i2am.pretrained.study``); they load the same way.

    from i2am.pretrained import toy_checkpoint
    model = create_model("custom-toy", checkpoint=toy_checkpoint("control"))
    i2am attribute model=custom-toy model.checkpoint=$(python -m i2am.pretrained control)
"""
from __future__ import annotations

import json
from pathlib import Path

TOY_DIR = Path(__file__).resolve().parent / "toy"
# The toy Kontext-style transformer of the joint-attention check (docs/dit_editors.md; card: kontext.json next to it)
TOY_KONTEXT = Path(__file__).resolve().parent / "toy_kontext" / "kontext.safetensors"
# What every shipped checkpoint must beat on held-out toy pairs (README, tests/unit/pretrained/test_pretrained_toy.py):
# the mean SSIM of its generated try-on region, pasted into the ground truth, above that of the garment's mean-colour
# fill by this.
HELDOUT_MARGIN = 0.05
# What the package may hold in all (checkpoints, cards, sources): 15 MB (docs/toy_world.md, "Study checkpoints")
PACKAGE_BUDGET_BYTES = 15_000_000


# A shipped checkpoint file: a full float16 state dict, or a quantised delta against one (i2am.pretrained.study)
SUFFIXES = (".safetensors", ".qdelta")


def toy_names(toy_dir: Path = TOY_DIR) -> list[str]:
    """Names of the shipped toy checkpoints (those with both a checkpoint file and a .json card), sorted."""
    return sorted(p.stem for suffix in SUFFIXES for p in toy_dir.glob(f"*{suffix}") if p.with_suffix(".json").is_file())


def shipped_bytes() -> int:
    """Bytes of every file in the package folder ``i2am/pretrained/`` (compiled-bytecode caches left out)."""
    root = Path(__file__).resolve().parent
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def toy_checkpoint(name: str, toy_dir: Path = TOY_DIR) -> Path:
    """Path of the shipped toy checkpoint ``name`` (e.g. "custom", "refined", "control", "custom-step200")."""
    for suffix in SUFFIXES:
        if (toy_dir / f"{name}{suffix}").is_file():
            return toy_dir / f"{name}{suffix}"
    raise FileNotFoundError(f"no shipped toy checkpoint {name!r} in {toy_dir}; shipped: {toy_names(toy_dir)}")


def toy_card(name: str, toy_dir: Path = TOY_DIR) -> dict:
    """The JSON card of ``name``: model, command, training figures, held-out metrics, sampler settings."""
    return json.loads(toy_checkpoint(name, toy_dir).with_suffix(".json").read_text())
