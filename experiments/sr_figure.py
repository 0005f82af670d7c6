"""The paper's super-resolution figure from a finished `i2am attribute experiment=sr_figure[-toy]` run.

For every sample: the LR input (at output size), the output and the HR image; G2R ULAM, TLAMs and HLAMs over the LR
input; R2G ULAM, TLAMs and HLAMs over the output; PSNR/SSIM (Y channel) in the title where HR is known.

  python experiments/sr_figure.py outputs/attribute/<date>_<time>      # -> <run>/figures/sr_<sample>.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hydra.utils import instantiate

from i2am.attribution import AttributionMaps
from i2am.data.image_io import read_rgb
from i2am.metrics.sr_quality import psnr_ssim
from i2am.models.pasd.figure import render_sr_figure
from i2am.runs import RunDir, safe_name


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--preset", default=None, help="to_image preset (default: the run's render.preset)")
    args = parser.parse_args(argv)
    run = RunDir(args.run_dir)
    run_cfg = run.load_config()
    if run_cfg is None:
        raise SystemExit(f"{run.config_file} not found: give the folder of an attribute run")
    preset = args.preset or run_cfg.render.preset
    datamodule = instantiate(run_cfg.data)
    datamodule.setup("predict")
    written = []
    for sample in datamodule.dataset:
        sid = safe_name(str(sample["sample_id"]))
        maps_file, output_file = run.sample_maps(sid), run.sample_image(sid)
        if not maps_file.is_file():
            continue
        maps = AttributionMaps.load(maps_file)
        output = read_rgb(output_file)[None]
        hr = sample["image"][None].float()
        scores = {k: float(v[0]) for k, v in psnr_ssim(output, hr).items()}
        path = render_sr_figure(maps, sample["lr"], output[0], run.sample_figure(f"sr_{sid}"),
                                index=0, hr=hr[0], preset=preset, metrics={k.upper(): v for k, v in scores.items()})
        written.append(path)
        print(json.dumps({"sample": sid, "figure": str(path), **scores}))
    if not written:
        raise SystemExit(f"no sample of {args.run_dir} has maps: run `i2am attribute experiment=sr_figure-toy` first")
    return written


if __name__ == "__main__":
    main()
