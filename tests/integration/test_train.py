"""`i2am train` end to end on custom-tiny + the toy world: CLI, compose API, both stages, kill-and-resume."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from helpers.tasks_util import cli, compose_task, read_metrics, run_task

from i2am.adapters import create_model
from i2am.training.tryon import TryOnTraining


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train_data")


def overrides(data_dir: Path, run: Path, *extra: str) -> list[str]:
    """A few steps on 4 toy training samples, batch 2, every batch conditional unless p_uncond is overridden."""
    return [f"paths.data_dir={data_dir}", f"run_dir={run}", "data.toy.n_train=4", "data.toy.n_test=2",
            "data.batch_size=2", "p_uncond=0.0", "trainer.enable_progress_bar=false", *extra]


def csv_rows(run: Path, version: int = 0) -> list[dict]:
    with open(run / "csv" / f"version_{version}" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def adam_steps(ckpt: dict) -> set[int]:
    return {int(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}


def test_cli_refined_stage_logs_losses_and_attention_and_writes_a_loadable_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    cli("train", overrides(data_dir, run, "attention_loss=paper", "trainer.max_steps=2", f"hydra.run.dir={run}"))

    metrics = read_metrics(run)
    assert metrics["global_step"] == 2 and metrics["attention_loss"] == "paper" and not metrics["resumed"]
    assert metrics["cwg"] < 0 and 0 < metrics["attention_entropy"] <= math.log(48) + 1e-4
    assert metrics["checkpoint"] == str(run / "checkpoints" / "last.ckpt")

    rows = csv_rows(run)
    assert [int(r["step"]) for r in rows] == [0, 1]
    for row in rows:
        for name in ("loss", "mse", "cwg", "tv", "dcml", "attention_entropy", "attention_max_prob"):
            assert math.isfinite(float(row[f"train/{name}"])), name

    state = checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    adapter = create_model("custom-tiny", checkpoint=str(run / "checkpoints" / "last.ckpt"))
    for key, value in adapter.state_dict().items():
        assert torch.equal(value, state[f"model.{key}"]), key


@pytest.mark.numeric
def test_compose_custom_then_refined_from_init_from(data_dir, tmp_path):
    custom = tmp_path / "custom"
    first = run_task("train", overrides(data_dir, custom, "trainer.max_steps=2"))
    assert first["attention_loss"] == "none" and "cwg" not in first
    assert math.isfinite(first["attention_entropy"]) and math.isfinite(first["attention_max_prob"])

    # lr 0 keeps the weights: the refined run must end exactly where the custom run ended
    refined = tmp_path / "refined"
    second = run_task("train", overrides(data_dir, refined, "attention_loss=paper", f"init_from={first['checkpoint']}",
                                         "optimizer.lr=0.0", "trainer.max_steps=1"))
    assert second["global_step"] == 1 and second["cwg"] < 0 and not second["resumed"]
    start = checkpoint(Path(first["checkpoint"]))["state_dict"]
    end = checkpoint(Path(second["checkpoint"]))["state_dict"]
    assert start.keys() == end.keys()
    assert all(torch.equal(start[k], end[k]) for k in start)


def test_killed_run_resumes_from_last_checkpoint(data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = overrides(data_dir, run, "trainer.max_steps=4", "checkpoint.every_n_steps=1")
    original = TryOnTraining.training_step

    def dies_at_step_2(self, batch, batch_idx):
        if self.global_step == 2:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(TryOnTraining, "training_step", dies_at_step_2)
    with pytest.raises(RuntimeError, match="killed"):
        run_task("train", args)
    assert checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert not (run / "metrics.json").exists()

    monkeypatch.setattr(TryOnTraining, "training_step", original)
    metrics = run_task("train", args)
    assert metrics["resumed"] and metrics["global_step"] == 4
    assert [int(r["step"]) for r in csv_rows(run, version=0)] == [0, 1]    # the killed start's log is kept
    assert [int(r["step"]) for r in csv_rows(run, version=1)] == [2, 3]    # the restart continues at step 2
    final = checkpoint(run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 4 and adam_steps(final) == {4}         # optimizer state carried over


def test_every_attention_loss_preset_composes():
    expected = {"none": (None, 0.0), "paper": (2.0, 0.0), "guarded": (2.0, 0.0), "correspondence": (None, 0.1)}
    for name, (cwg, correspondence) in expected.items():
        cfg = compose_task("train", [f"attention_loss={name}"])
        spec = cfg.attention_loss
        assert spec.name == name and spec.layer == 2 and spec.correspondence_weight == correspondence
        assert (spec.paper_losses.cwg_weight if spec.paper_losses else None) == cwg
    guarded = compose_task("train", ["attention_loss=guarded"]).attention_loss.paper_losses
    paper = compose_task("train", ["attention_loss=paper"]).attention_loss.paper_losses
    assert paper.cwg_warmup_steps == 0 and paper.entropy_floor_weight == 0
    assert guarded.cwg_warmup_steps > 0 and guarded.entropy_floor_weight > 0
    assert (guarded.tv_weight, guarded.dcml_weight, guarded.sigma) == (1e-4, 0.01, 1.0)


def test_ddp_training_tolerates_parameters_without_gradient():
    # a dropped batch leaves the projector without gradient and a conditional one the unconditional context
    assert compose_task("train", ["trainer=ddp"]).trainer.strategy == "ddp_find_unused_parameters_true"
