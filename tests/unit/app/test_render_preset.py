"""render.preset is set once: every evaluator that reads rendered maps (IMACS, box detection) follows it in every
task and experiment that composes them."""
import pytest
from helpers.tasks_util import compose_task
from omegaconf import OmegaConf

from i2am.report.artifacts import ARTIFACTS, task_of

EXPERIMENTS = [name + toy for name in ARTIFACTS for toy in ("", "-toy")]
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


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_its_evaluators_with_the_render_preset(experiment):
    cfg = compose_task(task_of(experiment), [f"experiment={experiment}", "render.preset=clean"])
    found = presets(cfg)
    assert set(found.values()) == ({"clean"} if experiment.split("-")[0] != "sr_figure" else set()), found
