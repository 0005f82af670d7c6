"""The engine on model adapters: "auto" follows the CFG layout of the UNet call in progress."""
import pytest
import torch

from i2am.adapters import create_model
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.sampling.sampler import Sampler


def toy_batch(tmp_path, n=2):
    root = write_toy_vitonhd(tmp_path / "toy", n_train=1, n_test=n, size=(128, 96), seed=0)
    data = VitonHDDataset(root, split="test", size=(128, 96), extras=("agnostic", "densepose"))
    samples = [data[i] for i in range(n)]
    return {k: (torch.stack([s[k] for s in samples]) if torch.is_tensor(samples[0][k]) else [s[k] for s in samples])
            for k in samples[0]}


def test_auto_layout_follows_the_guidance_of_each_call(tmp_path):
    torch.manual_seed(0)
    adapter = create_model("custom-tiny").eval()            # CFG order [cond, uncond], default guidance 5
    batch = toy_batch(tmp_path)
    layer = adapter.decoder_layer_name(2)
    runs = {}
    for name, guidance, layout in (("auto5", 5.0, "auto"), ("explicit5", 5.0, "cond_uncond"),
                                   ("auto1", 1.0, "auto"), ("explicit1", 1.0, "none")):
        cfg = CaptureConfig(num_steps=2, time_groups=1, sram_layers=(layer,), cfg_layout=layout)
        with AttributionCapture(adapter, cfg) as cap:
            adapter.sample(batch, sampler=Sampler(num_steps=2, guidance=guidance, seed=0))
        runs[name] = cap.maps()
    for a, b in (("auto5", "explicit5"), ("auto1", "explicit1")):
        assert runs[a].batch_size == 2
        for key in runs[b].raw:
            torch.testing.assert_close(runs[a].raw[key], runs[b].raw[key])
    assert not torch.allclose(runs["auto5"].g2r.ulam, runs["auto1"].g2r.ulam)


class SwitchingSampler(Sampler):
    """Guidance 5 for the first step, none (1.0) after it: its own loop, not the plan's."""

    def __call__(self, model, inputs, callback=None):
        calls = iter([5.0, 1.0])
        denoise = model.denoise
        model.denoise = lambda x, t, inp, guidance=None: denoise(x, t, inp, guidance=next(calls))
        try:
            return super().__call__(model, inputs, callback)
        finally:
            del model.denoise


def step_groups(adapter, batch, sampler, layout):
    cfg = CaptureConfig(num_steps=2, time_groups=2, cfg_layout=layout)
    with AttributionCapture(adapter, cfg) as cap:
        adapter.sample(batch, sampler=sampler)
    return cap.maps()


def test_capture_follows_a_sampler_that_switches_guidance_mid_run(tmp_path):
    """Step 0 is CFG-batched ([cond, uncond]), step 1 is not: the "auto" capture reads each call's own chunk, and a
    plan whose guidance changes per step gives the capture the same per-step layout."""
    from i2am.sampling.plan import SamplingPlan

    torch.manual_seed(0)
    adapter = create_model("custom-tiny").eval()
    batch = toy_batch(tmp_path)
    switched = step_groups(adapter, batch, SwitchingSampler(num_steps=2, seed=0), "auto")
    plan = SamplingPlan.resolve(Sampler(num_steps=2, guidance=[5.0, 1.0], seed=0), adapter, time_groups=2)
    assert plan.cfg_layouts == ("cond_uncond", "none")
    planned = step_groups(adapter, batch, plan.pin(Sampler(seed=0)), plan.capture_config(CaptureConfig()).cfg_layout)
    cfg_only = step_groups(adapter, batch, Sampler(num_steps=2, guidance=5.0, seed=0), "cond_uncond")
    assert switched.batch_size == planned.batch_size == 2
    for key in switched.raw:
        if key.startswith(("r2g/", "g2r/")):
            torch.testing.assert_close(switched.raw[key], planned.raw[key])
            # step 0 (group 0) is the same CFG call as a guided run's; reading the wrong chunk would differ
            torch.testing.assert_close(switched.raw[key][:, 0], cfg_only.raw[key][:, 0])
    with pytest.raises(RuntimeError, match="even batch"):   # a wrong fixed layout is caught on the unbatched step
        step_groups(adapter, {k: v[:1] for k, v in batch.items()},
                    SwitchingSampler(num_steps=2, seed=0), "cond_uncond")
