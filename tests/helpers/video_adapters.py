"""What the tests of the ``model=diffusers`` image-to-video adapters share: a dataset batch, the adapter's capture
next to ``i2am.trace`` on the same seeded pipeline calls, and the attribute task's overrides for a tiny video model."""
from __future__ import annotations

import torch

import i2am
from i2am.engine import CaptureConfig
from i2am.engine.factory import capture_for
from i2am.sampling.sampler import Sampler

RTOL, ATOL = 1e-5, 1e-7   # the adapter's maps vs the trace's: float32 both, summed in the same order

# the evaluators that fit a video, at the smallest settings that still compute every metric
VIDEO_CHECKS = ["evaluator_set=none", "+evaluator@evaluators.faithfulness=faithfulness",
                "evaluators.faithfulness.samples=1", "evaluators.faithfulness.fractions=[0.0,0.5,1.0]",
                "evaluators.faithfulness.random_orders=1", "evaluators.faithfulness.n_bootstrap=100",
                "+evaluator@evaluators.randomization=randomization", "evaluators.randomization.samples=1",
                "evaluators.randomization.modes=[cascading]", "evaluators.randomization.max_stages=2"]


def video_batch(size, n: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, *size, generator=g) * 2 - 1,
            "reference": torch.rand(n, 3, *size, generator=g) * 2 - 1, "sample_id": [f"s{i}" for i in range(n)]}


def capture_and_trace(model, relation: str, size, steps: int = 2):
    """The adapter's capture and ``i2am.trace``'s maps of ``relation`` over the same seeded calls, after asserting
    that the capture perturbs nothing (latents equal to a plain call's) and that both hold the same maps."""
    sampler = Sampler(num_steps=steps, seed=3)
    plain = model.sample(video_batch(size), sampler)["latents"]
    with capture_for(model, CaptureConfig(num_steps=steps, time_groups=2)) as cap:
        latents = model.sample(video_batch(size), sampler)["latents"]
    ours = cap.maps()
    with i2am.trace(model.pipe, CaptureConfig(time_groups=2)) as tr:
        model.sample(video_batch(size), sampler)
    theirs = tr.maps.relation(relation)
    assert torch.equal(latents, plain)
    assert ours.raw and sorted(ours.raw) == sorted(theirs.raw)
    for key, value in ours.raw.items():
        torch.testing.assert_close(value, theirs.raw[key], rtol=RTOL, atol=ATOL, msg=key)
    return ours, theirs


def attribute_overrides(tmp_path, *extra) -> list[str]:
    """``i2am attribute`` on the tiny video model, two toy pairs, two steps, one sample per batch."""
    return [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers-video-tiny",
            "sampler.num_steps=2", "data.limit=2", "data.batch_size=1", "data.toy.n_train=2", "data.toy.n_test=2",
            "trainer.enable_progress_bar=false", *extra]
