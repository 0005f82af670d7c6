"""Structured-config schemas (i2am/app/config_schema.py): wrong types and unknown keys fail at composition, naming the
key and the value; every shipped preset of a checked group passes."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tasks_util import CONF, cli, compose_task

from i2am.app.config_schema import ConfigValueError, validate

BAD = {   # group -> (override, what the message must name)
    "sampler": [("sampler.num_steps=abc", "sampler.num_steps='abc'"), ("+sampler.steps=5", "sampler.steps")],
    "capture": [("capture.time_groups=five", "capture.time_groups='five'"),
                ("capture.cfg_layout=sideways", "capture.cfg_layout='sideways'"),
                ("capture.directions=[r2g,up]", "capture.directions[1]='up'"), ("+capture.layer=x", "capture.layer")],
    "render": [("render.preset=fancy", "render.preset='fancy'"), ("render.cloth_forcing=maybe", "cloth_forcing"),
               ("+render.gamma=2", "render.gamma")],
    "paths": [("+paths.scratch=/tmp", "paths.scratch")],
    "trainer": [("trainer.max_steps=ten", "trainer.max_steps='ten'"), ("+trainer.max_step=10", "trainer.max_step")],
    "data": [("data.limit=many", "data.limit='many'"), ("data.batch_size=1.5", "data.batch_size=1.5")],
}


@pytest.mark.parametrize("group", sorted(BAD))
def test_a_wrong_value_or_unknown_key_names_itself(group):
    for override, named in BAD[group]:
        with pytest.raises(ConfigValueError) as err:
            validate(compose_task("attribute", [override]))
        assert named in str(err.value), (override, str(err.value))


@pytest.mark.parametrize("group", ["sampler", "capture", "trainer", "data", "paths"])
def test_every_shipped_preset_passes(group):
    for preset in sorted(Path(CONF, group).glob("*.yaml")):
        validate(compose_task("attribute", [f"{group}={preset.stem}"]))


@pytest.mark.parametrize("task", ["attribute", "train", "demo", "evaluate", "correlate", "detect", "report"])
def test_every_task_config_passes(task):
    validate(compose_task(task, []))


def test_the_cli_stops_before_the_task_starts(tmp_path):
    proc = cli("attribute", ["sampler.num_steps=abc", f"paths.output_dir={tmp_path / 'out'}",
                             f"paths.data_dir={tmp_path / 'data'}"], check=False)
    assert proc.returncode != 0
    assert "sampler.num_steps='abc'" in proc.stderr and "could not be converted to Integer" in proc.stderr
    assert not (tmp_path / "data").exists()                    # the toy world was never built
    assert not list((tmp_path / "out").glob("attribute/*/config.yaml"))   # the task never opened its run
