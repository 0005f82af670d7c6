"""A new user's mistakes: each is refused with one paragraph naming the key or file and the fix, no traceback, and a
run refused at startup writes nothing (no run folder, no toy world)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from helpers.tasks_util import ROOT, cli, compose_task, toy_overrides
from hydra.utils import instantiate
from omegaconf import OmegaConf

from i2am.adapters import create_model
from i2am.adapters._checkpoint import CheckpointError, read_state_dict
from i2am.app.cli import user_error_in
from i2am.data.toy import write_toy_vitonhd

REFUSED_AT_STARTUP = {   # overrides -> what the message must name (the key and its fix)
    "negative steps": (["sampler.num_steps=-3"], ["sampler.num_steps=-3", ">= 1"]),
    "empty batch": (["data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
    "more time groups than steps": (["capture.time_groups=3"], ["capture.time_groups=3", "sampler.num_steps=2",
                                                                "at most 2"]),
    "typo in data.root": (["data.root={tmp}/data/toy_vitonhdd"], ["data.root=", "toy_vitonhdd", "data.create=true"]),
    "run_dir is a file": (["run_dir={tmp}/a_file"], ["run_dir=", "a_file", "is an existing file"]),
}


def assert_one_paragraph(proc, *named):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("i2am ")]
    assert len(error) == 1, proc.stderr[-3000:]
    for text in named:
        assert text in error[0], (text, error[0])
    return error[0]


@pytest.mark.parametrize("mistake", sorted(REFUSED_AT_STARTUP))
def test_a_mistake_in_the_config_is_refused_before_anything_is_written(mistake, tmp_path):
    overrides, named = REFUSED_AT_STARTUP[mistake]
    (tmp_path / "a_file").write_text("not a folder")
    proc = cli("attribute", toy_overrides(tmp_path, f"paths.output_dir={tmp_path / 'out'}",
                                          *(o.format(tmp=tmp_path) for o in overrides)), check=False)
    assert_one_paragraph(proc, *named)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]   # no run folder, no toy world, no outputs/


def test_a_toy_world_written_with_other_arguments_is_refused_before_anything_is_written(tmp_path):
    world = write_toy_vitonhd(tmp_path / "data" / "toy_vitonhd", n_train=1, n_test=1, size=(128, 96), seed=0)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = cli("attribute", toy_overrides(tmp_path, f"paths.output_dir={tmp_path / 'out'}"), check=False)
    assert_one_paragraph(proc, str(world), "n_train: 1 there, 4 asked for", "another folder", "delete")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before   # no run folder, world unchanged


def test_the_traceback_is_shown_on_request(tmp_path):
    proc = cli("attribute", toy_overrides(tmp_path, "sampler.num_steps=-3"), check=False,
               env={"I2AM_TRACEBACK": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "sampler.num_steps=-3" in proc.stderr


def _custom_tiny_checkpoint_with_hyper_parameters(path):
    """A Lightning-style file: the weights plus pickled omegaconf hyper-parameters (not tensors)."""
    model = create_model("custom-tiny")
    torch.save({"state_dict": model.export_checkpoint(), "hyper_parameters": OmegaConf.create({"lr": 1e-3})}, path)
    return model


def test_a_checkpoint_that_pickles_objects_needs_model_trusted(tmp_path):
    path = tmp_path / "with_hparams.ckpt"
    saved = _custom_tiny_checkpoint_with_hyper_parameters(path)
    with pytest.raises(Exception) as refused:
        instantiate(compose_task("attribute", [f"model.checkpoint={path}"]).model)
    message = str(user_error_in(refused.value))
    assert str(path) in message and "arbitrary code" in message and "model.trusted=true" in message
    assert "weights_only" not in message
    trusted = instantiate(compose_task("attribute", [f"model.checkpoint={path}", "model.trusted=true"]).model)
    for key, value in saved.state_dict().items():   # the key reached the loader: the very weights were loaded
        torch.testing.assert_close(trusted.state_dict()[key], value, rtol=0, atol=0)


def test_a_corrupt_checkpoint_names_the_file_and_never_advises_unsafe_loading(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"w": torch.zeros(3)}, good)
    truncated, garbage = tmp_path / "truncated.ckpt", tmp_path / "garbage.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError) as err:
            read_state_dict(path)
        assert str(path) in str(err.value) and "not a readable checkpoint" in str(err.value)
        assert "weights_only" not in str(err.value) and "trusted" not in str(err.value)


def test_a_refused_checkpoint_is_refused_at_startup_before_anything_is_written(tmp_path):
    path = tmp_path / "with_hparams.ckpt"
    _custom_tiny_checkpoint_with_hyper_parameters(path)
    proc = cli("attribute", toy_overrides(tmp_path, f"model.checkpoint={path}"), check=False)
    assert_one_paragraph(proc, str(path), "model.trusted=true", "arbitrary code")
    assert "weights_only" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["with_hparams.ckpt"]   # no run folder, no toy world


def test_evaluate_without_torch_fidelity_names_the_extra_and_the_cli_keys(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  mode: paired\n")
    hide = "import sys; sys.modules['torch_fidelity'] = None; from i2am.app.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "I2AM_TASK": ""}
    proc = subprocess.run([sys.executable, "-c", hide, "evaluate", f"run_dir={run}",
                           f"paths.output_dir={tmp_path / 'out'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert_one_paragraph(proc, "torch-fidelity", "pip install 'i2am[metrics]'", "quality.metrics=[ssim]")
    assert "feature=nn.Module" not in proc.stderr
