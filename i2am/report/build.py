"""report.html of one or several attribute runs: config summary, metrics table, per-sample panels, correlation
scatter plots and the claims table.

    from i2am.report import write_report
    write_report("outputs/attribute/2025-01-01_12-00-00")               # -> <run>/report.html
    write_report({"custom": run_a, "refined": run_b}, out_path="cmp/report.html", claims=claims)
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from i2am.report import html
from i2am.report.claims import Claim, read_claims
from i2am.report.run_reader import AttributeRun
from i2am.runs import RunDir
from i2am.viz.faithfulness_panels import faithfulness_panels
from i2am.viz.panels import sample_panels

log = logging.getLogger(__name__)

# Rows of the metrics table, in this order (other keys follow, sorted).
KEY_ORDER = ("imacs_g", "imacs_r", "fid", "kid", "lpips", "ssim", "fid_randconv", "kid_randconv", "loc_err",
             "loc_err_bbox_baseline", "loc_err_centre_prior", "loc_err_chance_baseline", "loc_pointing",
             "loc_pointing_bbox_baseline", "loc_pointing_centre_prior", "attn_entropy",
             "attn_entropy_uniform", "attn_max_prob", "loc_localizes", "r2g_mass_in_region",
             "r2g_mass_in_region_uniform_baseline", "n_samples")
LABELS = {"fid_randconv": "fid_randconv (random-conv features, toy only; not Inception FID)",
          "kid_randconv": "kid_randconv (random-conv features, toy only; not Inception KID)",
          "attn_entropy": "attn_entropy (nats)", "loc_err": "loc_err (argmax error / reference diagonal)"}


def _shown(config: DictConfig, key: str):
    """A config value for display: resolved when possible, else as written (e.g. ${oc.env:...} of another machine)."""
    try:
        value = OmegaConf.select(config, key, default=None)
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
    except Exception:  # noqa: BLE001 - omegaconf raises several resolution errors; any of them means "show raw"
        value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        return OmegaConf.to_container(value, resolve=False) if isinstance(value, DictConfig) else value


def config_summary(config: DictConfig | None) -> dict[str, str]:
    """The settings a reader needs to interpret a run: model, checkpoint, data, sampler, capture, rendering."""
    if config is None:
        return {"config": "not recorded (no config.yaml)"}
    keys = ("task_name", "model.name", "model.checkpoint", "data._target_", "data.root", "data.split", "data.mode",
            "data.limit", "sampler", "capture", "render", "g2r_region", "seed")
    return {key: str(value) for key in keys if (value := _shown(config, key)) is not None}


def write_report(runs: str | Path | Mapping[str, str | Path], out_path: str | Path | None = None,
                 title: str | None = None, summary: Mapping[str, object] | None = None,
                 claims: Sequence[Claim] | None = None, scatter: Sequence[tuple[str, Path]] = (),
                 num_samples: int = 2, notes: Sequence[str] = (), read_inputs: bool = True) -> Path:
    """Write ``report.html`` for one run (a path; default output ``<run>/report.html``) or several runs
    (label -> path; ``out_path`` required). Panels go to ``<page dir>/report_files/<label>/``; every image is
    referenced by a path relative to the page. ``claims`` default to ``<run>/claims.json`` when it exists;
    ``scatter`` defaults to the run's ``figures/correlation_*.png``."""
    single = not isinstance(runs, Mapping)
    run_map = {Path(runs).name: Path(runs)} if single else {k: Path(v) for k, v in runs.items()}
    if out_path is None:
        if not single:
            raise ValueError("write_report: out_path is required for several runs")
        out_path = run_map[next(iter(run_map))] / "report.html"
    out_path = Path(out_path)
    page_dir = out_path.parent
    loaded = {label: AttributeRun(path) for label, path in run_map.items()}
    first = next(iter(loaded.values()))
    if claims is None and single and (first.path / "claims.json").is_file():
        claims = read_claims(first.path / "claims.json")
    if not scatter and single:
        scatter = [(p.stem, p) for p in RunDir(first.path).figures("correlation_*.png")]

    sections = []
    if notes:
        sections.append(("Notes", "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)))
    sections.append(("Configuration", html.key_value_table(summary if summary is not None
                                                         else config_summary(first.config))))
    if not single:
        sections.append(("Runs", html.key_value_table({label: run.path for label, run in loaded.items()})))
    if claims:
        sections.append(("Claims", html.claims_table(claims)))
    columns = {label: run.metrics for label, run in loaded.items()}
    present = {k for m in columns.values() for k in m}
    keys = [k for k in KEY_ORDER if k in present] + sorted(present - set(KEY_ORDER))
    sections.append(("Metrics", html.metrics_table(columns, keys, LABELS)))
    if scatter:
        sections.append(("IMACS vs quality across checkpoints", html.figures(scatter, page_dir)))
    for label, run in loaded.items():
        items = []
        views = run.views(num_samples, read_inputs)
        for view in views:
            panels = sample_panels(page_dir / "report_files" / label, view, title=label)
            items += [(f"{label} / {view.sample_id}: {caption}", path) for caption, path in panels]
        blind = any(v.reference is None for v in views)
        note = "<p class='note'>inputs (reference, agnostic) not readable: maps shown without them</p>" if blind else ""
        sections.append((f"Samples: {label}", note + html.figures(items, page_dir)))
        checks = faithfulness_panels(run.path, page_dir / "report_files" / label, label)
        if checks:
            sections.append((f"Faithfulness and sanity checks: {label}", html.figures(checks, page_dir)))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html.page(title or f"i2am report: {', '.join(loaded)}", sections))
    log.info("report: %s", out_path)
    return out_path
