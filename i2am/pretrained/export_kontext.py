"""``python -m i2am.pretrained.export_kontext RUN_DIR``: write a finished toy Kontext run (``i2am train_toy_kontext
run_dir=RUN_DIR``) as the shipped ``i2am/pretrained/toy_kontext/kontext.safetensors`` (float16) and its card
``kontext.json``: the training figures and the toy-world check on the first 4 held-out pairs, measured after the float16
round trip (docs/dit_editors.md, "Toy-world check")."""
from __future__ import annotations

import argparse
import json
import tempfile

import torch

from i2am.adapters.toy_kontext import CONFIG, build_toy_kontext
from i2am.errors import UserFileError
from i2am.pretrained import TOY_KONTEXT
from i2am.pretrained.export import sha256
from i2am.runs import RunDir
from i2am.training.toy_kontext_check import check_figures, load_toy_kontext
from i2am.training.toy_kontext_train import export_weights, load_toy_pairs

HELDOUT_PAIRS = 4


def card(run: RunDir, checkpoint: dict, heldout_check: dict) -> dict:
    """The shipped model's card: how it was trained (the run's settings and last losses) and what the check gave."""
    step = checkpoint["global_step"]
    last = checkpoint.get("toy_kontext", {})
    return {"name": "kontext", "model": "i2am.adapters.toy_kontext.build_toy_kontext", "config": CONFIG,
            "stored": "float16 (every tensor; loaded into a float32 model)", "global_step": step,
            "command": f"i2am train_toy_kontext run_dir={run.path} steps={step}",
            "export": f"python -m i2am.pretrained.export_kontext {run.path}",
            "training": {"steps": step, **checkpoint["hyper_parameters"], "step": step,
                         "wall_s": last.get("train_seconds"), **last.get("last", {})},
            "heldout_check": heldout_check}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = RunDir(args.run_dir)
    if run.last_checkpoint() is None:
        raise UserFileError(f"{run.last_checkpoint_file} not found: give the folder of a train_toy_kontext run")
    checkpoint = torch.load(run.last_checkpoint_file, weights_only=False)
    path = export_weights(checkpoint, TOY_KONTEXT)
    with tempfile.TemporaryDirectory() as data_dir:
        pairs = load_toy_pairs(data_dir, "test", world={"n_train": 1, "n_test": HELDOUT_PAIRS, "seed": 0})
    figures = check_figures(load_toy_kontext(path), build_toy_kontext(), pairs)
    record = {**card(run, checkpoint, figures), "bytes": path.stat().st_size, "sha256": sha256(path)}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
