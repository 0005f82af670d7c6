"""`i2am check <task>`: the startup checks one line each, exit 0 when all pass and 2 otherwise; nothing written."""
from __future__ import annotations

import pytest
import torch
from helpers.tasks_util import cli
from safetensors.torch import save_file

from i2am.adapters import create_model
from i2am.app.cli import check
from i2am.data.toy import write_toy_vitonhd


@pytest.fixture
def world(tmp_path):
    return write_toy_vitonhd(tmp_path / "data" / "toy_vitonhd", n_train=1, n_test=1, size=(128, 96), seed=0)


def toy(tmp_path, *extra: str) -> list[str]:
    return ["attribute", f"paths.data_dir={tmp_path / 'data'}", "data.toy.n_train=1", "data.toy.n_test=1", *extra]


def run_check(capsys, argv):
    code = check(argv)
    return code, capsys.readouterr().out.splitlines()


def failed(lines: list[str], name: str) -> str:
    line = next((line for line in lines if line.startswith(f"FAIL  {name}:")), None)
    assert line is not None, lines
    return line


def test_the_toy_config_passes_every_check(world, tmp_path, capsys):
    before = sorted(tmp_path.rglob("*"))
    code, lines = run_check(capsys, toy(tmp_path))
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [f"ok    {name}" for name in ("config", "data", "checkpoint",
                                                                                  "evaluators", "model path")]
    assert "1 samples" in lines[1] and sorted(tmp_path.rglob("*")) == before


def test_the_default_evaluators_for_paint_by_example_pass_and_say_what_was_left_out(world, tmp_path, capsys):
    code, lines = run_check(capsys, toy(tmp_path, "model=diffusers-tiny"))
    assert code == 0 and lines[3].startswith("ok    evaluators: imacs (") and "localization: left out" in lines[3]


def test_a_missing_data_file_names_the_file(world, tmp_path, capsys):
    missing = world / "test" / "cloth" / "000001_00.png"
    missing.unlink()
    code, lines = run_check(capsys, toy(tmp_path))
    assert code == 2 and "cloth" in failed(lines, "data") and "000001_00" in failed(lines, "data")


def test_a_corrupt_image_names_the_file(world, tmp_path, capsys):
    corrupt = world / "test" / "image" / "000001_00.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    code, lines = run_check(capsys, toy(tmp_path))
    assert code == 2 and f"{corrupt} cannot be decoded" in failed(lines, "data")


def test_the_checkpoint_keys_are_checked_against_the_model(world, tmp_path, capsys):
    fitting, foreign = tmp_path / "custom.safetensors", tmp_path / "foreign.safetensors"
    save_file(create_model("custom-tiny").export_checkpoint(), str(fitting))
    save_file({"some.other.weight": torch.zeros(3)}, str(foreign))
    code, lines = run_check(capsys, toy(tmp_path, f"model.checkpoint={fitting}"))
    assert code == 0 and lines[2] == f"ok    checkpoint: {fitting} fits custom-tiny", lines
    code, lines = run_check(capsys, toy(tmp_path, f"model.checkpoint={foreign}"))
    line = failed(lines, "checkpoint")
    assert code == 2 and str(foreign) in line and "does not fit custom-tiny" in line


def test_a_bad_range_names_the_key(world, tmp_path, capsys):
    code, lines = run_check(capsys, toy(tmp_path, "sampler.num_steps=-3"))
    assert code == 2 and "sampler.num_steps=-3" in failed(lines, "config")


def test_an_evaluator_that_cannot_apply_names_it_and_the_override(world, tmp_path, capsys):
    code, lines = run_check(capsys, toy(tmp_path, "model=diffusers-tiny", "evaluator_set=toy"))
    line = failed(lines, "evaluators")
    assert code == 2 and "'localization'" in line and "evaluator_set=imacs" in line
    assert lines[1].startswith("ok    data")


def test_the_cli_runs_check_and_exits_2_on_a_failure(world, tmp_path):
    proc = cli("check", toy(tmp_path, "data.batch_size=0"), check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert any(line.startswith("FAIL  config: data.batch_size=0") for line in proc.stdout.splitlines()), proc.stdout
