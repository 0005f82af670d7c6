"""The coverage table of diffusers' image-conditioned pipelines (i2am.adapters.diffusers.coverage) matches the installed
diffusers, the code that decides support, and the committed docs page."""
from __future__ import annotations

import inspect

import pytest
from helpers.paths import REPO

from i2am.adapters.diffusers import coverage
from i2am.adapters.diffusers.dit.transformer import ADAPTERS as TRANSFORMER_PIPELINES
from i2am.adapters.diffusers.kinds import KINDS
from i2am.adapters.diffusers.video.model import VIDEO_PIPELINES
from i2am.engine.packing import READERS
from i2am.tracing import VIDEO_TRACES

PAGE = REPO / "docs" / "pipeline_coverage.md"
REGENERATE = "python -m i2am.adapters.diffusers.coverage --write docs/pipeline_coverage.md"


@pytest.fixture(scope="module")
def classes():
    return coverage.pipeline_classes()


@pytest.fixture(scope="module")
def conditioned(classes):
    return {name for name, cls in classes.items() if coverage.image_inputs(cls)}


def test_every_image_conditioned_pipeline_is_classified(conditioned):
    missing = sorted(conditioned - set(coverage.COVERAGE))
    assert not missing, (f"the installed diffusers has image-conditioned pipelines that i2am has not classified: "
                         f"{missing}; add each to COVERAGE in i2am/adapters/diffusers/coverage.py (supported with its "
                         f"relations, or refused with the reason) and run `{REGENERATE}`")


def test_no_stale_entries(conditioned):
    stale = sorted(set(coverage.COVERAGE) - conditioned)
    assert not stale, (f"COVERAGE classifies pipelines that the installed diffusers no longer exports as image-"
                       f"conditioned: {stale}; remove them and run `{REGENERATE}`")


def test_committed_page_is_generated():
    assert PAGE.read_text() == coverage.render(), f"docs/pipeline_coverage.md is stale: run `{REGENERATE}`"


def _init_parameters(cls) -> dict:
    return inspect.signature(cls.__init__).parameters


def test_supported_pipelines_are_accepted_by_the_code_that_decides(classes):
    for name, entry in coverage.COVERAGE.items():
        if not entry.supported:
            continue
        init = _init_parameters(classes[name])
        assert entry.relations and coverage.TRACE in entry.entry_points, name
        if "unet" in init:   # i2am.trace: i2am.engine.pipelines.denoisers reads pipe.unet
            if coverage.CLI in entry.entry_points:
                assert name in KINDS, f"{name} is marked model=diffusers but has no kind in diffusers_kinds.KINDS"
        else:   # i2am.trace: i2am.engine.joint.find_blocks (or a video trace) reads the transformer by its class
            transformer = init["transformer"].annotation
            assert transformer.__name__ in READERS or transformer.__name__ in VIDEO_TRACES, (
                f"{name}: {transformer.__name__} is neither a joint-attention reader nor a video transformer")
            if coverage.CLI in entry.entry_points:
                assert name in TRANSFORMER_PIPELINES or name in VIDEO_PIPELINES, (
                    f"{name} is marked model=diffusers but is neither a transformer nor an image-to-video kind")


def test_every_attribute_loop_kind_is_listed_as_supported(conditioned):
    runs = (set(KINDS) | set(TRANSFORMER_PIPELINES) | set(VIDEO_PIPELINES)) & conditioned
    listed = {name for name, entry in coverage.COVERAGE.items() if coverage.CLI in entry.entry_points}
    assert runs == listed


def test_refused_entries_give_a_reason():
    assert all(entry.note for entry in coverage.COVERAGE.values() if not entry.supported)


def test_image_inputs_reads_the_call_signature():
    class Pipe:
        def __call__(self, prompt, ip_adapter_image=None, num_inference_steps=50, mask_image=None):
            pass

    assert coverage.image_inputs(Pipe) == ["ip_adapter_image", "mask_image"]
