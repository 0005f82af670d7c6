"""i2am.viz.plot: matplotlib Figures with honest ranges and colour bars, grids per family, SRAM cells outlined (not
filled), token bar charts, word labels, save_figures; the user's backend is left alone."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.paths import REPO
from helpers.synthetic_maps import HEADS, R2G_GRIDS, SRAM_LAYER, synthetic_maps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from i2am.engine import AttributionMaps
from i2am.viz.plot import draw_maps, family_maps, plot, plot_sram, plot_words, sample_figures, save_figures

IMAGE = np.full((32, 32, 3), 128, dtype=np.uint8)


@pytest.fixture(scope="module")
def maps():
    return synthetic_maps()


def _colorbars(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _map_images(fig: Figure) -> list:
    """The colour-mapped map layers (alpha < 1 over an image, or bare maps) of the figure's panels."""
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    return [im for ax in panels for im in ax.get_images() if im.get_array().ndim == 2]


def test_plot_returns_a_figure_with_a_colour_bar_from_zero_to_the_largest_value(maps):
    fig = plot(maps, IMAGE, family="ulam")
    assert isinstance(fig, Figure)
    (bar,) = _colorbars(fig)
    (layer,) = _map_images(fig)
    expected = maps.r2g.distribution("ulam")[0]
    np.testing.assert_array_equal(np.asarray(layer.get_array()), expected.numpy())   # drawn as it is, cell by cell
    assert layer.get_clim() == (0.0, pytest.approx(float(expected.max())))
    assert "probability per cell" in bar.get_ylabel()
    assert plot(maps, IMAGE, colorbar=False).axes and not _colorbars(plot(maps, IMAGE, colorbar=False))


def test_a_nearly_flat_map_is_not_stretched_unless_asked():
    flat = torch.full((1, 8, 8), 0.144)
    flat[0, 2, 3] = 0.149
    honest = _map_images(draw_maps(flat, ["flat"], IMAGE, view="sum"))[0]
    lo, hi = honest.get_clim()
    assert (lo, hi) == (0.0, pytest.approx(0.149))
    assert float(honest.norm(np.float64(0.144))) > 0.96          # 0.144 sits near the top of the scale: looks flat
    stretched = _map_images(draw_maps(flat, ["flat"], IMAGE, view="sum", normalize="minmax"))[0]
    assert stretched.get_clim() == (0.0, 1.0) and float(np.asarray(stretched.get_array()).min()) == 0.0


@pytest.mark.parametrize("family, count", [("tlam", 2), ("hlam", HEADS), ("llam", len(R2G_GRIDS))])
def test_families_are_grids_of_one_panel_per_group_head_or_layer_on_one_scale(maps, family, count):
    fig = plot(maps, IMAGE, family=family)
    layers = _map_images(fig)
    assert len(layers) == count and len(_colorbars(fig)) == 1
    assert len({im.get_clim() for im in layers}) == 1
    stack, labels = family_maps(maps, family)
    assert stack.shape[0] == count and len(labels) == count
    if family == "tlam":
        assert labels == ["R2G TLAM steps 0-2", "R2G TLAM steps 3-4"]


def test_sram_query_cells_are_outlined_not_filled(maps):
    cells = [(1, 1), (4, 6)]
    fig = plot_sram(maps, SRAM_LAYER, cells, IMAGE, IMAGE)
    outlines = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(outlines) == 2 and not any(p.get_fill() for p in outlines)
    grid = R2G_GRIDS[SRAM_LAYER]
    x, y = outlines[1].get_xy()
    assert (x, y) == (6 * 32 / grid[1] - 0.5, 4 * 32 / grid[0] - 0.5)
    generated_pixels = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(generated_pixels), IMAGE)    # the image itself is not painted
    srams = _map_images(fig)
    np.testing.assert_array_equal(np.asarray(srams[1].get_array()),
                                  maps.sram(SRAM_LAYER, points=cells, reduce="mean")[0, 1].numpy())


def test_token_relations_are_bar_charts_labelled_with_their_tokens():
    base = synthetic_maps()
    raw = {k: v for k, v in base.raw.items() if not k.startswith("sram/")}
    raw = {k: (torch.arange(1.0, 6.0).expand(*v.shape[:3], 1, 5) if k.startswith("g2r/") else v)
           for k, v in raw.items()}
    layers = [{**m, "ref_grid": [1, 5]} for m in base.meta["layers"]]
    tokens_maps = AttributionMaps(raw, {**base.meta, "layers": layers})
    assert tokens_maps.g2r_on_tokens
    words = ["a", "red", "dress", "<pad>", "<pad>"]
    fig = plot(tokens_maps, family="ulam", direction="g2r", tokens=words)
    (ax,) = fig.axes
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, tokens_maps.g2r.distribution("ulam")[0, 0].numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == words
    with pytest.raises(ValueError, match="3 labels for 5 tokens"):
        plot(tokens_maps, family="ulam", direction="g2r", tokens=words[:3])


def test_word_maps_are_titled_with_the_words(maps):
    words = [f"w{t}" for t in range(24)]
    fig = plot_words(maps, SRAM_LAYER, IMAGE, words=words, tokens=[0, 5])
    titles = [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_images()]
    assert [t.splitlines()[0] for t in titles] == ["0: w0", "5: w5"]
    with pytest.raises(ValueError, match="2 labels for the 24 tokens"):
        plot_words(maps, SRAM_LAYER, IMAGE, words=words[:2])


def test_save_figures_writes_one_png_per_figure(maps, tmp_path):
    figures = sample_figures(maps, IMAGE, IMAGE, sram_cells=[(2, 2)])
    assert set(figures) == {f"{d}_{f}" for d in ("r2g", "g2r") for f in ("ulam", "tlam", "hlam", "llam")} | {"sram"}
    paths = save_figures(figures, tmp_path / "figs")
    assert [p.name for p in paths] == [f"{name}.png" for name in figures]
    for path in paths:
        with Image.open(path) as image:
            assert image.size[0] > 100 and image.size[1] > 100


def test_bad_arguments_name_the_choices(maps):
    with pytest.raises(ValueError, match="normalize='auto'"):
        plot(maps, IMAGE, normalize="auto")
    with pytest.raises(ValueError, match="family='xlam'"):
        plot(maps, IMAGE, family="xlam")


def test_plotting_leaves_the_backend_and_pyplot_alone():
    code = ("import sys, matplotlib; matplotlib.use('svg'); import numpy as np; "
            "from helpers.synthetic_maps import synthetic_maps; from i2am.viz.plot import plot, save_figures; "
            "import tempfile; fig = plot(synthetic_maps(), np.zeros((8, 8, 3), np.uint8), family='tlam'); "
            "save_figures({'f': fig}, tempfile.mkdtemp()); "
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["svg", "False"]


def test_layer_titles_drop_the_relation_and_the_unet_detour():
    from i2am.viz.plot import short_layer_name

    assert short_layer_name("text/up_blocks.1.attentions.0.transformer_blocks.0.attn2") == "up.1.0.attn2"
    assert short_layer_name("text/transformer_blocks.3.attn") == "transformer.3.attn"
