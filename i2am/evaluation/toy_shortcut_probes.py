"""Shortcut probes of a toy VITON-HD world: do the person-side inputs alone say where each generated cell's content
comes from in the garment image? A fair world answers no, so that only the garment image (the reference) can.

On held-out query cells (the localisation evaluator's: at least half in the try-on region and half covered by the
garment) each probe predicts the source cell on the reference grid and is scored like the evaluator's argmax error
(distance over the grid diagonal, ``i2am.measures.localization``). The probes read only person-side inputs (agnostic
image, DensePose-like map, agnostic mask, parse labels, each pooled to the query grid, and the cell's position):

- ``direct``: every ordered pair of those channels read as the (row, col) of a garment-image point (the best pair);
- ``linear``, ``quadratic``, ``mlp``: regressors fitted on the train split's cells (least squares, ridge on all
  degree-2 products, and a two-layer MLP).

Baselines on the same cells: the bounding-box mapping (the only one that reads the garment image, through its mask),
a seeded random map and the quantisation floor (the true source's nearest cell: the least error an argmax can have).

``python -m i2am.evaluation.toy_shortcut_probes`` prints the table of docs/toy_world.md for both world versions.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from i2am.data.toy.vitonhd import WORLDS, write_toy_vitonhd
from i2am.measures.localization import (
    bbox_mapping_sources,
    grid_cells,
    localization_stats,
    point_maps,
    pool_to_grid,
    random_maps,
    true_source_cells,
)

SIZE = (128, 96)
GRID = (16, 12)   # the toy models' SRAM grid (decoder layers 3-4) and garment-token grid
PARSE_LABELS = (0, 2, 5, 9, 10, 13, 14, 15)   # the labels the toy world writes (i2am.data.toy.person)
PERSON_CHANNELS = ("densepose_0", "densepose_1", "densepose_2", "agnostic_r", "agnostic_g", "agnostic_b",
                   "agnostic_mask", *(f"parse_{label}" for label in PARSE_LABELS))
PERSON_PROBES = ("direct", "linear", "quadratic", "mlp")
BASELINES = ("bbox", "random", "floor")


@dataclass(frozen=True)
class QueryCells:
    """The query cells of one split: person-side channels [N, C] in [0, 1] (``PERSON_CHANNELS``), cell position
    [N, 2] in [0, 1], true source [N, 2] and bounding-box mapping [N, 2] (reference cell coordinates)."""
    channels: Tensor
    position: Tensor
    source: Tensor
    bbox: Tensor


def _read(path: Path) -> Tensor:
    array = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1)


def load_query_cells(root: Path, split: str, grid: tuple[int, int] = GRID) -> QueryCells:
    """The query cells of every pair of ``split`` in the toy world at ``root``."""
    names = sorted(p.stem for p in (root / split / "image").glob("*.png"))
    folder = root / split
    parse = torch.stack([torch.from_numpy(np.array(Image.open(folder / "image-parse-v3" / f"{n}.png"))) for n in names])
    person = torch.cat([
        torch.stack([_read(folder / "image-densepose" / f"{n}.png") for n in names]),
        torch.stack([_read(folder / "agnostic-v3.2" / f"{n}.png") for n in names]),
        inpaint_mask := torch.stack([_read(folder / "agnostic-mask" / f"{n}_mask.png") for n in names]),
        torch.stack([(parse == label).float() for label in PARSE_LABELS], dim=1)], dim=1)
    reference_mask = torch.stack([_read(folder / "cloth-mask" / f"{n}.png") for n in names])
    correspondence = torch.stack([torch.from_numpy(np.load(folder / "correspondence" / f"{n}.npy")).permute(2, 0, 1)
                                  for n in names])
    source, coverage = true_source_cells(correspondence, grid, grid, reference_mask.shape[-2:])
    keep = (pool_to_grid(inpaint_mask, grid).flatten(1) >= 0.5) & (coverage >= 0.5)
    cells = grid_cells(*grid)
    bbox = bbox_mapping_sources(cells, grid, inpaint_mask, reference_mask, grid)
    channels = pool_to_grid(person, grid).flatten(2).transpose(1, 2)
    position = ((cells.float() + 0.5) / torch.tensor(grid, dtype=torch.float32)).expand(len(names), -1, -1)
    return QueryCells(channels[keep], position[keep], source[keep], bbox[keep])


def argmax_error(points: Tensor, source: Tensor, grid: tuple[int, int] = GRID) -> Tensor:
    """Mean argmax error (over the grid diagonal) of point maps at ``points`` [..., N, 2] against ``source`` [N, 2]
    -> [...]."""
    return localization_stats(point_maps(points, grid), source, radii=(1,))["err"].mean(-1)


def direct_read_error(cells: QueryCells, grid: tuple[int, int] = GRID) -> tuple[float, str]:
    """The best ordered pair of person-side channels read as a normalised (row, col) of the reference image: the
    error and the pair's name. A value v is the pixel v * (size - 1), as ``garment_uv``'s DensePose map writes it."""
    size = torch.tensor(SIZE, dtype=torch.float32)
    scale = torch.tensor(grid, dtype=torch.float32) / size
    channels = cells.channels.T   # [C, N]
    best = (float("inf"), "")
    for row, name in enumerate(PERSON_CHANNELS):
        pixel = torch.stack([channels[row].expand_as(channels), channels], dim=-1) * (size - 1)   # [C, N, 2]
        errors = argmax_error((pixel + 0.5) * scale - 0.5, cells.source, grid)
        errors[row] = float("inf")
        col = int(errors.argmin())
        best = min(best, (float(errors[col]), f"{name} as row, {PERSON_CHANNELS[col]} as col"))
    return best


def _features(cells: QueryCells) -> Tensor:
    return torch.cat([cells.channels, cells.position], dim=-1).double()


def _quadratic(features: Tensor) -> Tensor:
    rows, cols = torch.triu_indices(features.shape[1], features.shape[1])
    return torch.cat([features, features[:, rows] * features[:, cols]], dim=-1)


def _ridge(train: Tensor, target: Tensor, test: Tensor, penalty: float) -> Tensor:
    """Ridge regression on standardised features with an unpenalised bias."""
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    train, test = (torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1) for x in (train, test))
    eye = torch.eye(train.shape[1], dtype=train.dtype)
    eye[-1, -1] = 0
    weights = torch.linalg.solve(train.T @ train + penalty * len(train) * eye, train.T @ target.double())
    return (test @ weights).float()


def _mlp(train: Tensor, target: Tensor, test: Tensor, seed: int, steps: int = 300) -> Tensor:
    """A two-layer MLP (64 hidden units, tanh), Adam full batch, on standardised features and targets."""
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    target_mean, target_std = target.mean(0), target.std(0)
    x, y = ((train - mean) / std).float(), (target - target_mean) / target_std
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                torch.nn.Tanh(), torch.nn.Linear(64, 2))
    with torch.no_grad():   # seeded from its own generator, leaving the global one alone
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * parameter.shape[-1] ** -0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return model(((test - mean) / std).float()) * target_std + target_mean


def probe_errors(train: QueryCells, test: QueryCells, seed: int = 0, grid: tuple[int, int] = GRID) -> dict:
    """Argmax error on ``test``'s cells of every probe (``PERSON_PROBES``, fitted on ``train``) and baseline
    (``BASELINES``); ``direct_pair`` names the best direct pair and ``n_test_cells`` counts the cells."""
    x_train, x_test = _features(train), _features(test)
    predictions = {"linear": _ridge(x_train, train.source, x_test, penalty=1e-6),
                   "quadratic": _ridge(_quadratic(x_train), train.source, _quadratic(x_test), penalty=1e-3),
                   "mlp": _mlp(x_train, train.source, x_test, seed)}
    errors = {name: float(argmax_error(points, test.source, grid)) for name, points in predictions.items()}
    errors["direct"], errors["direct_pair"] = direct_read_error(test, grid)
    errors["bbox"] = float(argmax_error(test.bbox, test.source, grid))
    random = random_maps(len(test.source), grid, torch.Generator().manual_seed(seed))
    errors["random"] = float(localization_stats(random, test.source, radii=(1,))["err"].mean())
    errors["floor"] = float(argmax_error(test.source, test.source, grid))
    errors["n_test_cells"] = len(test.source)
    return errors


def probe_world(world: str, n_train: int = 32, n_test: int = 16, seed: int = 0, root: Path | None = None) -> dict:
    """``probe_errors`` on a toy world of ``world`` (``WORLDS``) written at ``root`` (a temporary folder if None)."""
    with tempfile.TemporaryDirectory() as scratch:
        root = write_toy_vitonhd(Path(root or scratch) / world, n_train=n_train, n_test=n_test, size=SIZE, seed=seed,
                                 world=world)
        return probe_errors(load_query_cells(root, "train"), load_query_cells(root, "test"), seed)


ROW_NAMES = {"direct": "(a) best person-side channel pair read directly", "linear": "(b) linear regressor",
             "quadratic": "(b) quadratic regressor", "mlp": "(b) tiny MLP (2 x 64 tanh)",
             "bbox": "(c) bounding-box mapping (reads the garment mask)", "random": "(c) random map",
             "floor": "(c) quantisation floor (nearest cell to the true source)"}


def markdown_table(results: dict[str, dict]) -> str:
    """A markdown table, one column per world, one row per probe and baseline."""
    worlds = list(results)
    lines = ["| probe (argmax error / reference diagonal) | " + " | ".join(f"`{w}`" for w in worlds) + " |",
             "|---" * (len(worlds) + 1) + "|"]
    for name in (*PERSON_PROBES, *BASELINES):
        lines.append(f"| {ROW_NAMES[name]} | " + " | ".join(f"{results[w][name]:.4f}" for w in worlds) + " |")
    lines.append("| held-out query cells | " + " | ".join(str(results[w]["n_test_cells"]) for w in worlds) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = {world: probe_world(world, args.n_train, args.n_test, args.seed) for world in WORLDS}
    print(markdown_table(results))
    for world, figures in results.items():
        print(f"{world}: best direct pair = {figures['direct_pair']}")


if __name__ == "__main__":
    main()
