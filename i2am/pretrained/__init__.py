"""Pretrained toy checkpoints shipped inside the package (``i2am/pretrained/toy/``, docs/toy_world.md).

Each ``<name>.safetensors`` is a custom-toy adapter state dict stored as float16 (it loads into a float32 model)
next to ``<name>.json``: the model preset, the reproducing command, the training run's figures and the held-out
metrics measured after the float16 round trip, when it was exported (``i2am.pretrained.export``).

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


def toy_names() -> list[str]:
    """Names of the shipped toy checkpoints (those with both a .safetensors and a .json file), sorted."""
    return sorted(p.stem for p in TOY_DIR.glob("*.safetensors") if p.with_suffix(".json").is_file())


def toy_checkpoint(name: str) -> Path:
    """Path of the shipped toy checkpoint ``name`` (e.g. "custom", "refined", "control", "custom-step200")."""
    path = TOY_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped toy checkpoint {name!r} ({path}); shipped: {toy_names()}")
    return path


def toy_card(name: str) -> dict:
    """The JSON card of ``name``: model, command, training figures, held-out metrics, sampler settings."""
    toy_checkpoint(name)
    return json.loads((TOY_DIR / f"{name}.json").read_text())
