"""SkyReelsV2ImageToVideoPipeline (Wan 2.1's transformer; its trace is tested with Wan's and ChronoEdit's in
test_trace_video.py): the coverage table lists the relations the trace finds."""
from __future__ import annotations

import i2am
from i2am import toy
from i2am.adapters.diffusers.coverage import CLI, COVERAGE, TRACE


def test_the_coverage_table_lists_the_relations_the_trace_finds():
    pipe = toy.pipeline("SkyReelsV2ImageToVideoPipeline")
    entry = COVERAGE["SkyReelsV2ImageToVideoPipeline"]
    assert entry.supported and entry.entry_points == (TRACE, CLI)
    assert i2am.trace(pipe).relations == list(entry.relations)
