"""How the PNGs of docs/maps.md were made: figures of ``i2am.viz.plot`` and the report's sample panels, each laid out
on an HTML page and photographed by headless Chromium (what a reader of the report sees), then palette-compressed.

    i2am demo demo.quick=true paths.output_dir=/tmp/demo    # toy runs with maps (a few minutes)
    python docs/images/make_images.py /tmp/demo/demo/<run>/attribute/custom docs/images

Needs ``chromium`` on the PATH. Writes plot_llam.png, plot_sram.png, plot_tokens.png and report_panels.png.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

import i2am
from i2am.adapters.diffusers.tiny import build_pipeline
from i2am.report import html
from i2am.report.run_reader import AttributeRun
from i2am.viz.panels import sample_panels, sram_query_cells
from i2am.viz.plot import plot, plot_sram, save_figures

WIDTH = 1100


def screenshot(page: Path, out: Path, height: int) -> Path:
    """``page`` in headless Chromium at WIDTH x height, as a palette PNG at ``out``."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([shutil.which("chromium") or "chromium-browser", "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={out}",
                        f"--window-size={WIDTH},{height}", page.as_uri()], check=True, capture_output=True)
    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)
    return out


def photograph(items: list[tuple[str, Path]], title: str, out: Path, height: int, work: Path) -> Path:
    """The report's own figure markup (``i2am.report.html``) around ``items``, photographed."""
    page = work / f"{out.stem}.html"
    page.write_text(html.page(title, [(title, html.figures(items, work))]))
    return screenshot(page, out, height)


def ip_adapter_trace():
    """A tiny StableDiffusion pipeline with a plain IP-Adapter (random weights): its G2R over the 4 image tokens."""
    pipe = build_pipeline("StableDiffusionPipeline", "tiny", ip_adapter="plain")
    pipe.set_progress_bar_config(disable=True)
    embeds = torch.randn(1, 77, pipe.text_encoder.config.hidden_size, generator=torch.Generator().manual_seed(0))
    width = pipe.image_encoder.config.projection_dim
    image_embeds = torch.randn(1, 1, width, generator=torch.Generator().manual_seed(1))
    with i2am.trace(pipe) as tr:
        pipe(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds),
             ip_adapter_image_embeds=[torch.cat([torch.zeros_like(image_embeds), image_embeds])],
             num_inference_steps=4, height=64, width=64, output_type="np")
    return tr.maps.relation("image:ip_adapter")


def main(run_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    view = AttributeRun(run_dir).views(1)[0]
    layer = next(key[len("sram/"):] for key in view.maps.raw if key.startswith("sram/"))
    cells = sram_query_cells(tuple(view.maps.layer_meta(layer)["query_grid"]), view.region)
    figures = {"llam": plot(view.maps, view.generated, family="llam", columns=4),
               "sram": plot_sram(view.maps, layer, cells[[0, 4, 8]], view.generated, view.reference),
               "tokens": plot(ip_adapter_trace(), family="ulam", direction="g2r",
                              tokens=[f"image token {k}" for k in range(4)])}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, path in zip(figures, save_figures(figures, work, dpi=100)):
            height = {"tokens": 400}.get(name, 540)
            photograph([(f"i2am.viz.plot: {name}", path)], f"plot: {name}", out / f"plot_{name}.png", height, work)
        label = Path(run_dir).name
        panels = sample_panels(work / "panels", view, title=label)
        chosen = [(f"{label} / {view.sample_id}: {caption}", path) for caption, path in panels
                  if caption in ("overview", "SRAM")]
        photograph(chosen, f"Samples: {label}", out / "report_panels.png", 820, work)


if __name__ == "__main__":
    main(*sys.argv[1:3])
