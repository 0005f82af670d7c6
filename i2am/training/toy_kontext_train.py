"""Training of the toy Kontext-style transformer (``i2am.adapters.toy_kontext``) on the toy world, resumable.

    OMP_NUM_THREADS=1 python -m i2am.training.toy_kontext_train outputs/toy_kontext [--steps 3000]

Every random draw of step i (the batch, the times, the noise) comes from a generator seeded with (seed, i), and the
run folder's ``last.pt`` holds the model, the optimiser and the step: a run killed and started again continues
exactly as an uninterrupted one. ``log.jsonl`` gets the losses every ``log_every`` steps.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from i2am.adapters.toy_kontext import IMAGE_SIZE, ToyKontextPairs, build_toy_kontext, encode_pairs, training_losses
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset

CHECKPOINT = "last.pt"
TOY_WORLD = {"n_train": 256, "n_test": 16, "seed": 0}   # conf/data/toy_vitonhd.yaml's toy world


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    correspondence_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 50


def toy_dataset(data_dir: str | Path, split: str, limit: int | None = None, world: dict | None = None
                ) -> VitonHDDataset:
    """The toy world's ``split`` under ``data_dir``/toy_vitonhd (written there on first use), with the extras the toy
    Kontext model reads. ``world``: ``write_toy_vitonhd`` arguments (default ``TOY_WORLD``); a smaller world holds the
    same first pairs (sample i depends only on the seed, the split and i)."""
    root = Path(data_dir) / "toy_vitonhd"
    wanted = {**(world or TOY_WORLD), "size": list(IMAGE_SIZE)}
    write_toy_vitonhd(root, **wanted)   # at once when that world is there; another world there is refused
    return VitonHDDataset(root, split, "paired", IMAGE_SIZE, ("agnostic", "densepose", "correspondence"), limit)


def load_toy_pairs(data_dir: str | Path, split: str, limit: int | None = None, world: dict | None = None
                   ) -> ToyKontextPairs:
    """``toy_dataset``'s pairs, encoded (``encode_pairs``)."""
    dataset = toy_dataset(data_dir, split, limit, world)
    parts = [encode_pairs(batch) for batch in DataLoader(dataset, batch_size=64)]
    fields = ToyKontextPairs.__dataclass_fields__
    return ToyKontextPairs(**{k: torch.cat([getattr(p, k) for p in parts]) for k in fields})


def export_weights(run_dir: str | Path, path: str | Path) -> Path:
    """The run's last model as a float16 safetensors file (what ``i2am/pretrained/toy_kontext/`` ships)."""
    from safetensors.torch import save_file

    state = torch.load(Path(run_dir) / CHECKPOINT, weights_only=False)["model"]
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(path))
    return Path(path)


def _draws(cfg: TrainConfig, step: int, pairs: ToyKontextPairs):
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    index = torch.randperm(len(pairs), generator=generator)[:cfg.batch_size]
    batch = pairs.select(index)
    s = torch.rand(len(index), generator=generator)
    noise = torch.randn(batch.x0.shape, generator=generator)
    return batch, s, noise


def _draw_settings(config: dict) -> dict:
    """What a resumed run must share with the checkpoint: everything but where it stops."""
    return {k: v for k, v in config.items() if k != "steps"}


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(run_dir: str | Path, pairs: ToyKontextPairs, cfg: TrainConfig | None = None,
          progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train (or resume) in ``run_dir``; returns the model and the last logged figures (loss, mse,
    correspondence_ce, step, wall_s: seconds spent training over all sessions)."""
    cfg = cfg or TrainConfig()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_toy_kontext(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    step, wall, last = 0, 0.0, {}
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        if _draw_settings(state["config"]) != _draw_settings(asdict(cfg)):
            raise ValueError(f"{checkpoint} was written with {state['config']}, this run asks for {asdict(cfg)}; "
                             "use another run folder or the same settings (only steps may change)")
        if state["step"] > cfg.steps:
            raise ValueError(f"{checkpoint} is at step {state['step']}, beyond steps={cfg.steps}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, wall, last = state["step"], state["wall_s"], state["last"]
    model.train()
    log = (run_dir / "log.jsonl").open("a")
    bar = tqdm(total=cfg.steps, initial=step, desc="toy kontext", disable=not progress)
    started = time.perf_counter() - wall
    while step < cfg.steps:
        batch, s, noise = _draws(cfg, step, pairs)
        losses = training_losses(model, batch, s, noise, cfg.correspondence_weight)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            last = {"step": step, "wall_s": time.perf_counter() - started,
                    **{k: float(v.detach()) for k, v in losses.items()}}
            log.write(json.dumps(last) + "\n")
            log.flush()
            bar.set_postfix(mse=f"{last['mse']:.3f}", ce=f"{last['correspondence_ce']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                               "wall_s": time.perf_counter() - started, "last": last, "config": asdict(cfg)})
        bar.update(1)
    bar.close()
    log.close()
    return model.eval(), last


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir", default="data")
    for name, value in asdict(TrainConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig())})
    _, last = train(args.run_dir, load_toy_pairs(args.data_dir, "train"), cfg)
    print(json.dumps(last))


if __name__ == "__main__":
    main()
