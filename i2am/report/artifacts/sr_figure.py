"""The paper's super-resolution figure (docs/method.md §5.3) from a finished PASD run.

For every sample: the LR input (at output size), the output and the HR image; G2R ULAM, TLAMs and HLAMs over the LR
input; R2G ULAM, TLAMs and HLAMs over the output; PSNR/SSIM (Y channel) in the title where HR is known.

    i2am reproduce sr_figure [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/sr_figure[-toy]/sr_<sample>.png
"""
from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate

from i2am.data.image_io import read_rgb
from i2am.engine import AttributionMaps
from i2am.evaluation.sr_quality import psnr_ssim
from i2am.runs import RunDir, safe_name
from i2am.viz.pasd import render_sr_figure


def draw_run(run_dir: Path, out: Path, preset: str | None = None) -> list[Path]:
    """sr_<sample>.png in ``out`` for every sample of an SR attribute run that has maps (preset: the run's own)."""
    run = RunDir(run_dir)
    run_cfg = run.load_config()
    if run_cfg is None:
        raise FileNotFoundError(f"{run.config_file} not found: give the folder of an attribute run")
    datamodule = instantiate(run_cfg.data)
    datamodule.setup("predict")
    written = []
    for sample in datamodule.dataset:
        sid = safe_name(str(sample["sample_id"]))
        if not run.sample_maps(sid).is_file():
            continue
        maps = AttributionMaps.load(run.sample_maps(sid))
        output = read_rgb(run.sample_image(sid))[None]
        hr = sample["image"][None].float()
        scores = {k: float(v[0]) for k, v in psnr_ssim(output, hr).items()}
        written.append(render_sr_figure(maps, sample["lr"], output[0], out / f"sr_{sid}.png", index=0, hr=hr[0],
                                        preset=preset or run_cfg.render.preset,
                                        metrics={k.upper(): v for k, v in scores.items()}))
        print(json.dumps({"sample": sid, "figure": str(written[-1]), **scores}))
    if not written:
        raise FileNotFoundError(f"no sample of {run_dir} has maps")
    return written


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    return draw_run(runs["pasd"], out)
