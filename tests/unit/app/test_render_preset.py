"""render.preset is set once: every evaluator that reads rendered maps (IMACS, box detection) follows it in every
task and experiment that composes them."""
import pytest
from helpers.artifacts import artifact_job_overrides
from helpers.paths import CONF
from helpers.tasks_util import compose_task
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from i2am.report.artifacts import ARTIFACTS, task_of

READS_RENDERED_MAPS = ("ImacsEvaluator", "BoxDetectionEvaluator")


def presets(cfg) -> dict[str, str]:
    """evaluator name -> the preset it was composed with, for every evaluator of the run reading rendered maps."""
    evaluators = OmegaConf.to_container(cfg.evaluators, resolve=True) if cfg.get("evaluators") else {}
    return {name: spec["preset"] for name, spec in evaluators.items()
            if spec and str(spec.get("_target_", "")).endswith(READS_RENDERED_MAPS)}


@pytest.mark.parametrize("overrides", [
    ("attribute", []), ("attribute", ["evaluator_set=toy"]), ("attribute", ["evaluator_set=imacs"]),
    ("detect", []), ("attribute", ["+evaluator@evaluators.boxes=detection"])], ids=str)
@pytest.mark.parametrize("preset", ["official", "clean"])
def test_evaluators_follow_render_preset(overrides, preset):
    task, extra = overrides
    found = presets(compose_task(task, [*extra, f"render.preset={preset}"]))
    assert found and set(found.values()) == {preset}, found


@pytest.mark.parametrize("twin", ["real", "toy"])
@pytest.mark.parametrize("name", ARTIFACTS)
def test_every_artifact_job_composes_its_evaluators_with_the_render_preset(name, twin):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        jobs = artifact_job_overrides(name, twin, "render.preset=clean")
    for label, overrides in jobs.items():
        found = presets(compose_task(task_of(name), overrides))
        assert set(found.values()) == ({"clean"} if name != "sr_figure" else set()), (label, found)
