"""The default evaluator set follows the model's reference and the data's ground truth; an explicit evaluator that
cannot apply is refused at startup, before anything is sampled or written."""
from __future__ import annotations

import pytest
from helpers.tasks_util import cli, compose_task, toy_overrides

from i2am.app.evaluator_fit import EvaluatorMismatchError, adapter_fit, fit_evaluators, meta_adapter

IP_ADAPTER = ["model=diffusers-tiny", "model.pipeline=StableDiffusionImg2ImgPipeline"]


def fitted(*overrides: str):
    cfg = compose_task("attribute", list(overrides))
    return fit_evaluators(cfg, adapter_fit(meta_adapter(cfg.model), cfg.data))


def test_custom_model_on_toy_data_keeps_imacs_r_and_localisation():
    kept, notes = fitted("model=custom-tiny")
    assert sorted(kept) == ["imacs", "localization"] and notes == []
    assert kept["imacs"]["directions"] == ["r2g", "g2r"]


def test_paint_by_example_default_drops_localisation_with_a_note():
    kept, notes = fitted("model=diffusers-tiny")
    assert sorted(kept) == ["imacs"] and kept["imacs"]["directions"] == ["r2g"]
    assert any(n.startswith("localization: left out") and "not an image grid" in n for n in notes), notes


def test_ip_adapter_tokens_get_neither_imacs_r_nor_localisation():
    kept, notes = fitted(*IP_ADAPTER)
    assert sorted(kept) == ["imacs"] and kept["imacs"]["directions"] == ["r2g"]
    assert any("image:ip_adapter" in n for n in notes), notes


def test_reference_attention_is_a_grid_and_keeps_localisation():
    kept, _ = fitted("model=diffusers-tiny", "model.pipeline=StableDiffusionPipeline", "model.reference_attention=true")
    assert sorted(kept) == ["imacs", "localization"] and kept["imacs"]["directions"] == ["r2g", "g2r"]


def test_data_without_ground_truth_drops_localisation():
    kept, notes = fitted("model=custom-tiny", "data.extras=[agnostic,densepose]")
    assert sorted(kept) == ["imacs"] and "ground-truth correspondence" in notes[0]


@pytest.mark.parametrize("overrides", [["model=diffusers-tiny"], IP_ADAPTER])
def test_explicit_localisation_that_cannot_apply_names_the_evaluator_and_the_override(overrides):
    with pytest.raises(EvaluatorMismatchError, match=r"'localization'.*evaluator_set=imacs"):
        fitted(*overrides, "evaluator_set=toy")


def test_explicit_evaluator_refused_by_the_cli_before_any_sampling(tmp_path):
    proc = cli("attribute", toy_overrides(tmp_path, f"paths.output_dir={tmp_path / 'out'}", "model=diffusers-tiny",
                                          "evaluator_set=toy"), check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("i2am attribute: error:")]
    assert len(error) == 1 and "'localization'" in error[0] and "evaluator_set=imacs" in error[0], proc.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []   # no run folder, no samples, no metrics, no toy world
