"""`i2am demo`: each stage on its own and the quick demo end to end."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.paths import REPO
from hydra import compose, initialize_config_dir
from PIL import Image

from i2am.app.tasks.demo import Demo, intermediate_checkpoints, quoted, summary_markdown
from i2am.pretrained import toy_checkpoint
from i2am.pretrained.study import study_names

CONF = str(REPO / "conf")


@pytest.fixture
def demo(tmp_path, toy_data_dir):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("demo", overrides=["demo.quick=true", f"paths.data_dir={toy_data_dir}",
                                         f"run_dir={tmp_path / 'demo'}"])
        yield Demo(cfg, tmp_path / "demo")


def test_from_scratch_trains_the_stages_the_default_takes_from_the_package(demo, monkeypatch):
    trained = []
    monkeypatch.setattr(Demo, "train", lambda self, label, *a, **k: trained.append(label) or Path(label))
    monkeypatch.setattr("i2am.app.tasks.demo.last", lambda path: Path(f"{path}.ckpt"))
    monkeypatch.setattr("i2am.app.tasks.demo.intermediate_checkpoints", lambda path: [Path("step=3.ckpt")])
    final, intermediate = demo.trained_checkpoints()
    assert trained == [] and final["control"] == toy_checkpoint("control") and intermediate == {}
    demo.cfg.demo.study = True       # the study set: custom's shipped intermediate checkpoints
    final, intermediate = demo.trained_checkpoints()
    assert list(intermediate) == study_names() and len(intermediate) >= 10
    assert intermediate["custom-step100"] == toy_checkpoint("custom-step100")
    demo.cfg.demo.from_scratch = True
    final, intermediate = demo.trained_checkpoints()
    assert trained == ["custom", "refined", "control"] and final["refined"] == Path("refined.ckpt")
    assert list(intermediate) == ["custom-step3"]


def test_train_stage_keeps_intermediate_checkpoints_and_is_skipped_when_done(demo):
    out = demo.train("custom", "none", steps=2, every=1)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert [p.name for p in intermediate_checkpoints(out)] == ["step=1.ckpt"]   # step 2 is last.ckpt
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert demo.train("custom", "none", steps=2, every=1) == out
    assert (out / "metrics.json").stat().st_mtime_ns == stamp


def test_attribute_stage_scores_imacs_localisation_and_labelled_quality(demo):
    out = demo.attribute("untrained", None)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("imacs_g", "imacs_r", "loc_err", "loc_err_bbox_baseline", "loc_err_centre_prior",
                "attn_entropy", "attn_entropy_uniform", "fid_randconv", "kid_randconv", "ssim"):
        assert isinstance(metrics.get(key), float), key
    assert "fid" not in metrics                       # random-conv features never pass for Inception FID
    assert metrics["n_samples"] == demo.budget.num_samples
    assert len(list((out / "maps").glob("*.safetensors"))) == demo.budget.num_samples


def test_quoted_paths_survive_hydra_override_parsing():
    paths = [Path("/ckpt/step=3.ckpt"), Path("/o'dd/dir"), Path("C:\\runs\\x")]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for path in paths:
            assert compose("report", overrides=[f"run_dir={quoted(path)}"]).run_dir == str(path)


def test_summary_table_has_one_row_per_model():
    text = summary_markdown({"custom": {"imacs_g": 0.25, "loc_err": 0.5}, "control": {"imacs_g": -1.0}})
    lines = text.splitlines()
    assert lines[0] == "| model | imacs_g | loc_err |"
    assert lines[2:] == ["| custom | 0.250 | 0.500 |", "| control | -1.000 | – |"]


@pytest.mark.slow   # the whole demo at a token budget: about 1.5 minutes on 2 cores (.ci/run's slow set)
def test_quick_demo_end_to_end(tmp_path):
    from helpers.tasks_util import cli

    out = tmp_path / "demo"
    printed = cli("demo", ["demo.quick=true", "demo.study=true", f"run_dir={out}",
                           f"paths.data_dir={tmp_path / 'data'}"], timeout=900).stdout
    assert "| claim | measured |" in printed and "Positive control" in printed
    assert not (out / "train").exists()          # the default starts from the shipped toy checkpoints
    attributed = sorted(p.name for p in (out / "attribute").iterdir())
    assert attributed == sorted(["control", "control-train", "custom", "refined", "untrained", *study_names()])
    assert str(toy_checkpoint("control")) in (out / "attribute" / "control" / "config.yaml").read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 8 + 3 and all(c["held"] in (True, False, None) for c in claims)   # + the control's checks
    by_name = {c["claim"].split(" (")[0]: c for c in claims}
    correlation_claim = by_name["IMACS tracks generation quality across checkpoints"]
    assert correlation_claim["outcome"] != "insufficient n"      # the study set and custom: 12 checkpoints of one run
    assert "n=12" in correlation_claim["measured"] and "12 checkpoints of one run" in correlation_claim["note"]
    imacs = by_name["Refined model has higher IMACS_g and IMACS_r than the MSE-only model"]
    assert "IMACS_g clean (refined - custom): n = " in imacs["measured"] and "official" in imacs["measured"]
    correlation = (out / "correlation" / "correlation.csv").read_text()
    assert "imacs_g,faith_proxy_pixel_del_gap," in correlation   # IMACS next to faithfulness across the checked runs
    page = out / "report.html"
    sources = re.findall(r"<img src='([^']+)'", page.read_text())
    assert len(sources) >= 5 * 5
    for source in sources:
        with Image.open(page.parent / source) as image:
            image.load()
    text = page.read_text()
    assert "random-conv" in text and "Positive control" in text
    assert json.loads((out / "metrics.json").read_text())["claims_total"] == 8 + 3
    assert "Faithfulness and sanity checks: control" in text
