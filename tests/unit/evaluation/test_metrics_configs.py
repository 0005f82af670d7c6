"""conf/evaluator/*.yaml build the evaluators; metrics/ stays free of Lightning and the model zoo."""
import subprocess
import sys

import pytest
import torch
from helpers.paths import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf

from i2am.evaluation import ImacsEvaluator
from i2am.evaluation.detection import BoxDetectionEvaluator
from i2am.evaluation.evaluator import Evaluator
from i2am.evaluation.localization_evaluator import SramLocalizationEvaluator
from i2am.evaluation.sr_quality import SRQualityEvaluator
from i2am.measures.quality import QualityEvaluator

CONF = REPO / "conf" / "evaluator"


def load(name, render_preset="official"):
    """conf/evaluator/<name>.yaml as composed into a run: under a root whose render.preset its preset follows."""
    root = OmegaConf.create({"render": {"preset": render_preset}, "evaluator": OmegaConf.load(CONF / f"{name}.yaml")})
    return root.evaluator


def test_imacs_detection_and_localization_configs_instantiate():
    assert isinstance(instantiate(load("imacs")), ImacsEvaluator)
    detection = instantiate(load("detection"))
    assert isinstance(detection, BoxDetectionEvaluator) and detection.metric.box_kwargs["percentile"] == 65.0
    localization = instantiate(load("localization"))
    assert isinstance(localization, SramLocalizationEvaluator) and localization.metric.bbox_tolerance == 0.05
    assert isinstance(instantiate(load("sr_quality")), SRQualityEvaluator)


def test_every_per_sample_evaluator_config_builds_an_evaluator():
    """conf/evaluator_set/<set>.yaml name the per-sample evaluators of `i2am attribute`: each must be an Evaluator."""
    for name in ("imacs", "localization", "detection", "sr_quality"):
        assert isinstance(instantiate(load(name)), Evaluator), name


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_quality_config_builds_with_a_toy_backbone_and_names_missing_weights_otherwise():
    toy = instantiate(load("quality"), feature="random-conv", metrics=["fid", "kid", "ssim"], kid_subset_size=2)
    assert isinstance(toy, QualityEvaluator) and toy.size == (512, 384)
    toy.update_real(torch.rand(2, 3, 16, 12) * 2 - 1)
    toy.update_generated(torch.rand(2, 3, 16, 12) * 2 - 1)
    toy.update_paired(torch.rand(2, 3, 16, 12) * 2 - 1, torch.rand(2, 3, 16, 12) * 2 - 1)
    assert set(toy.compute()) == {"fid_randconv", "kid_randconv", "kid_std_randconv", "ssim"}
    with pytest.raises(Exception, match="torch-fidelity|weights-inception"):
        instantiate(load("quality"))  # offline, without the extra or its weights


def test_correlation_config_is_a_partial_over_runs(tmp_path):
    correlate = instantiate(load("correlation"), n_bootstrap=50)
    runs = [{"imacs_g": g, "fid": f} for g, f in ((0.1, 13.0), (0.3, 10.7), (0.2, 11.5))]
    table = correlate(output_dir=tmp_path, runs=runs)
    assert [(row["x"], row["y"]) for row in table] == [("imacs_g", "fid")]
    assert (tmp_path / "correlation.csv").is_file()


def test_metrics_import_neither_lightning_nor_the_model_zoo():
    code = ("import sys, i2am.evaluation, i2am.evaluation.detection, i2am.measures.quality, "
            "i2am.evaluation.correlation, "
            "i2am.evaluation.localization_evaluator, i2am.evaluation.record; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') "
            "or m.startswith('i2am.adapters') or m.startswith('i2am.training')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
