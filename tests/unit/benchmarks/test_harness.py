"""benchmarks/_harness.py on constructed timings: quartiles, pairing, the rotating interleave and the profiler share.
No timing is asserted: the clock is a counter the test controls."""
import itertools

import pytest
import torch
from helpers.bench_modules import bench_module

harness = bench_module("_harness")


def test_summary_is_median_and_inclusive_quartiles():
    s = harness.summarize([5, 1, 4, 2, 3])
    assert (s.median, s.q1, s.q3, s.iqr, s.n) == (3, 2, 4, 2, 5)
    assert harness.summarize([7.0]).iqr == 0
    with pytest.raises(ValueError):
        harness.summarize([])


def test_paired_ratios_cancel_a_drift_that_unpaired_medians_keep():
    # the machine slows down 10x over the repeats; the capture costs 20 % on top, always
    plain = [1.0 * (1 + r) for r in range(11)]
    capture = [1.2 * p for p in plain]
    paired = harness.compare({"plain": plain, "capture": capture}, "plain")
    assert paired["capture"].median == pytest.approx(1.2) and paired["capture"].iqr == pytest.approx(0)
    assert paired["plain"].median == 6.0                      # the baseline's own summary is its seconds
    shifted = harness.summarize(capture[6:]).median / harness.summarize(plain[:5]).median
    assert shifted > 2                                       # what unpaired medians of separate runs would say
    with pytest.raises(ValueError, match="3 values against 2"):
        harness.paired_ratios([1, 2, 3], [1, 2])


def test_interleave_warms_up_rotates_the_order_and_times_each_call():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    ticks = itertools.count()
    times = harness.interleaved(runs, repeats=3, warmup=2, clock=lambda: float(next(ticks)))
    assert calls[:6] == list("abcabc")                       # warm-up, untimed
    assert calls[6:] == list("abc" "bca" "cab")              # each repeat starts one place further along
    assert times == {name: [1.0] * 3 for name in "abc"}      # one tick between start and end of each call


def test_profiler_share_counts_only_operations_from_the_marked_files():
    x = torch.randn(64, 64)
    layer = torch.nn.Linear(64, 64)

    def work():
        for _ in range(5):
            layer(x @ x)                                     # nn.Linear's operations count for the file calling it
        torch.softmax(x, -1)

    assert harness.profiler_share(work, ["no/such/file.py"]) == 0
    # every operation of work() is called from this file; the rest is the profiler's own start and stop
    assert harness.profiler_share(work, ["test_harness.py"]) > 0.9


def test_doc_block_is_rewritten_between_its_markers_only(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("head\n<!-- t:start -->\nold\n<!-- t:end -->\ntail\n<!-- u:start -->\nkept\n<!-- u:end -->\n")
    harness.write_doc_block(doc, "t", "new table")
    assert doc.read_text() == ("head\n<!-- t:start -->\nnew table\n<!-- t:end -->\ntail\n<!-- u:start -->\nkept\n"
                               "<!-- u:end -->\n")
    with pytest.raises(ValueError, match="<!-- missing:start -->"):
        harness.write_doc_block(doc, "missing", "x")


def test_profiler_share_leaves_the_models_own_operators_to_the_model():
    q = torch.randn(1, 2, 256, 32)

    def work():   # a pass-through calling the model's attention, and the tool's own extra matmul
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        q @ q.transpose(-1, -2)

    everything = harness.profiler_share(work, ["test_harness.py"])
    tool_only = harness.profiler_share(work, ["test_harness.py"], model_ops=harness.ATTENTION_OPS)
    assert everything > 0.9 and 0 < tool_only < everything - 0.1
