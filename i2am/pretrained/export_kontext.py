"""``python -m i2am.pretrained.export_kontext RUN_DIR``: write a finished toy Kontext run
(``python -m i2am.training.toy_kontext_train RUN_DIR``) as the shipped
``i2am/pretrained/toy_kontext/kontext.safetensors`` (float16) and its card ``kontext.json``: the training figures and
the toy-world check on the first 4 held-out pairs, measured after the float16 round trip (docs/dit_editors.md,
"Toy-world check")."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from i2am.adapters.toy_kontext import CONFIG, build_toy_kontext
from i2am.pretrained import TOY_KONTEXT
from i2am.pretrained.export import sha256
from i2am.training.toy_kontext_check import check_figures, load_toy_kontext
from i2am.training.toy_kontext_train import CHECKPOINT, export_weights, load_toy_pairs

HELDOUT_PAIRS = 4


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    state = torch.load(Path(args.run_dir) / CHECKPOINT, weights_only=False)
    path = export_weights(args.run_dir, TOY_KONTEXT)
    with tempfile.TemporaryDirectory() as data_dir:
        pairs = load_toy_pairs(data_dir, "test", world={"n_train": 1, "n_test": HELDOUT_PAIRS, "seed": 0})
    card = {"name": "kontext", "model": "i2am.adapters.toy_kontext.build_toy_kontext", "config": CONFIG,
            "stored": "float16 (every tensor; loaded into a float32 model)", "global_step": state["step"],
            "command": f"python -m i2am.training.toy_kontext_train {args.run_dir} --steps {state['step']}",
            "export": f"python -m i2am.pretrained.export_kontext {args.run_dir}",
            "training": {**state["config"], **state["last"]},
            "heldout_check": check_figures(load_toy_kontext(path), build_toy_kontext(), pairs),
            "bytes": path.stat().st_size, "sha256": sha256(path)}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
