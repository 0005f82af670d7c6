"""A new evaluator is one class and one YAML: this one lives only here and in tests/conf/evaluator/, and runs
inside `i2am attribute` (per-sample values, merged dataset value, resume-safe state) without touching the
LightningModule."""
import json

import torch
from helpers.tasks_util import ROOT, run_task, toy_overrides
from torchmetrics import MeanMetric

from i2am.evaluation.evaluator import Evaluator, SampleContext

SEARCH_PATH = f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]"


class PixelMeanEvaluator(Evaluator):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.mean = MeanMetric()

    def update(self, ctx: SampleContext) -> None:
        assert ctx.generated.shape[0] == 1 and "r2g" in ctx.rendered and ctx.sample_dir is not None
        ctx.sample_dir.mkdir(parents=True, exist_ok=True)
        (ctx.sample_dir / "pixel_mean.txt").write_text(f"{float(ctx.generated.mean()):.6f}")
        self.mean.update(ctx.generated.mean() * self.scale)

    def compute(self) -> dict[str, float]:
        return {"toy_pixel_mean": float(self.mean.compute())}


def test_a_toy_evaluator_from_a_test_yaml_runs_inside_attribute(tmp_path):
    metrics = run_task("attribute", toy_overrides(tmp_path, SEARCH_PATH,
                                                  "+evaluator@evaluators.pixel=toy_pixel_mean"))
    run = tmp_path / "run"
    records = [json.loads(p.read_text()) for p in sorted((run / "metrics").glob("*.json"))]
    assert len(records) == metrics["n_samples"] == 4
    per_sample = [r["toy_pixel_mean"] for r in records]
    files = sorted((run / "per_sample").glob("*/pixel_mean.txt"))
    assert len(files) == 4
    written = torch.tensor([float(f.read_text()) for f in files])
    torch.testing.assert_close(torch.tensor(per_sample), 2.0 * written, atol=1e-5, rtol=0)   # scale from the YAML
    # the dataset value is the merge of the per-sample states (equal-weight samples: the mean of the sample values)
    assert abs(metrics["toy_pixel_mean"] - sum(per_sample) / 4) < 1e-5
    assert json.loads((run / "metrics.json").read_text())["toy_pixel_mean"] == metrics["toy_pixel_mean"]
    assert "imacs_g" in metrics and "loc_err" in metrics    # the configured evaluators still run beside it
