"""The toy world's shortcut probes: the garment_uv world gives each cell's source away on the person side, the
body_surface world does not, and the bounding-box mapping leaves room above the grid's quantisation floor."""
import math
import re

import pytest
from helpers.tasks_util import ROOT

from i2am.data.toy.vitonhd import WORLDS
from i2am.evaluation.toy_shortcut_probes import (
    BASELINES,
    GRID,
    PERSON_PROBES,
    ROW_NAMES,
    markdown_table,
    probe_world,
)

# A quarter of a grid cell over the diagonal: what "the shortcut localises" may cost above the floor (the probes read
# cell means, which mix a cell's uncovered pixels into its source).
QUARTER_CELL = 0.25 / math.hypot(*GRID)


@pytest.fixture(scope="module")
def results():
    return {world: probe_world(world) for world in WORLDS}   # 32 train / 16 test pairs each


def test_the_probes_find_the_garment_uv_shortcut(results):
    figures = results["garment_uv"]
    for probe in PERSON_PROBES:
        assert figures[probe] <= figures["floor"] + QUARTER_CELL, (probe, figures)
        assert figures[probe] < figures["bbox"], (probe, figures)
    assert "densepose" in figures["direct_pair"]


def test_no_person_side_probe_beats_the_bounding_box_mapping_on_body_surface(results):
    """Margin on the floor: the bounding-box mapping's error is at least twice the floor, so the room a model that
    reads the garment can show below it (bbox - floor) is at least as large as the grid's own quantisation cost."""
    figures = results["body_surface"]
    for probe in PERSON_PROBES:
        assert figures[probe] >= figures["bbox"], (probe, figures)
    assert figures["bbox"] >= 2 * figures["floor"], figures
    assert figures["random"] > max(figures[p] for p in PERSON_PROBES)
    assert figures["n_test_cells"] >= 500


def test_the_docs_table_is_the_probes_table(results):
    """Tolerance 0.005 (a tenth of a cell): the MLP's figures move in the last digits with the CPU kind; every other
    figure is the same computation."""
    printed = markdown_table(results)
    docs = (ROOT / "docs/toy_world.md").read_text()
    assert printed.splitlines()[0] in docs
    for name in (*PERSON_PROBES, *BASELINES):
        line = next(row for row in docs.splitlines() if row.startswith(f"| {ROW_NAMES[name]} |"))
        documented = [float(value) for value in re.findall(r"\d+\.\d+", line.split(" | ", 1)[1])]
        assert documented == pytest.approx([results[w][name] for w in WORLDS], abs=0.005), name
