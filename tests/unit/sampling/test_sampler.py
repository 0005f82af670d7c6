"""The sampler: LDM-equal DDIM, start codes, callbacks, schedulers by name, per-sample seeding."""
from typing import ClassVar

import pytest
import torch
from torch import nn

from i2am.adapters._base import DenoiseInputs
from i2am.sampling.sampler import Sampler, make_scheduler, sample_seed


class LinearToyModel(nn.Module):
    """eps = 0.1 * x + context mean: enough to make every sample's trajectory depend only on its own inputs."""

    sampler_defaults: ClassVar[dict] = dict(scheduler="ddim", num_steps=10, guidance=None, eta=0.0, start_code="noise")
    latent_encoding = "mode"
    records_call = True

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.calls = []

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def denoise(self, x, t, inputs, guidance=None):
        self.calls.append(int(t))
        return 0.1 * x + inputs.context.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    def encode_images(self, images):
        return images[:, :4, ::8, ::8]


def toy_inputs(ids, start=None):
    ctx = torch.stack([torch.full((1, 2), float(ord(i[0]))) / 100 for i in ids])
    return DenoiseInputs(concat=None, context=ctx, uncond_context=ctx, latent_shape=(4, 2, 3), sample_ids=list(ids),
                         start_image=start)


def test_ddim_timesteps_equal_ldm_uniform_discretisation():
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))
    assert scheduler.final_alpha_cumprod == scheduler.alphas_cumprod[0]


def test_ddim_update_equals_the_ldm_formula():
    model, inputs = LinearToyModel(), toy_inputs(["a"])
    seen = []
    Sampler(num_steps=4, seed=3)(model, inputs, callback=seen.append)
    acp = make_scheduler("ddim").alphas_cumprod
    for s in seen:   # eta = 0: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
        a, a_prev = acp[s["t"]], acp[s["t"] - 250] if s["t"] > 250 else acp[0]
        x0 = (s["x"] - (1 - a).sqrt() * s["eps"]) / a.sqrt()
        torch.testing.assert_close(s["denoised"], x0)
        torch.testing.assert_close(s["x_next"], a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * s["eps"])
    assert [s["step"] for s in seen] == [0, 1, 2, 3] and [s["t"] for s in seen] == [751, 501, 251, 1]


def test_start_codes():
    model = LinearToyModel()
    noise = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(sample_seed(5, "a")))
    first = []
    Sampler(num_steps=2, seed=5)(model, toy_inputs(["a"]), callback=first.append)
    assert torch.equal(first[0]["x"][0], noise)
    image = torch.randn(1, 4, 16, 24)
    first.clear()
    Sampler(num_steps=2, seed=5, start_code="q_sample")(model, toy_inputs(["a"], image), callback=first.append)
    a = make_scheduler("ddim").alphas_cumprod[999]
    torch.testing.assert_close(first[0]["x"][0], a.sqrt() * image[0, :4, ::8, ::8] + (1 - a).sqrt() * noise)
    with pytest.raises(ValueError, match="start_image"):
        Sampler(start_code="q_sample")(model, toy_inputs(["a"]))
    with pytest.raises(ValueError, match="start_code"):
        Sampler(start_code="zeros")


@pytest.mark.numeric
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_sample_does_not_depend_on_batch_composition_or_order(eta):
    model = LinearToyModel()
    together = Sampler(num_steps=5, seed=11, eta=eta)(model, toy_inputs(["a", "b", "c"]))
    alone = Sampler(num_steps=5, seed=11, eta=eta)(model, toy_inputs(["c", "a"]))
    assert torch.equal(together[2], alone[0]) and torch.equal(together[0], alone[1])
    other_seed = Sampler(num_steps=5, seed=12, eta=eta)(model, toy_inputs(["a"]))
    assert not torch.equal(other_seed[0], together[0])


def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(0, "img_00001__cloth_00002") == sample_seed(0, "img_00001__cloth_00002")
    seeds = {sample_seed(s, i) for s in range(3) for i in ("a", "b", "c")}
    assert len(seeds) == 9 and all(0 <= s < 2 ** 63 for s in seeds)


def test_any_diffusers_scheduler_by_name_and_model_defaults():
    model = LinearToyModel()
    Sampler(scheduler="unipc", num_steps=20)(model, toy_inputs(["a"]))
    assert len(model.calls) == 20 and model.calls[0] > model.calls[-1]
    model.calls.clear()
    Sampler(scheduler="EulerDiscreteScheduler", num_steps=3)(model, toy_inputs(["a"]))
    assert len(model.calls) == 3
    model.calls.clear()
    Sampler()(model, toy_inputs(["a"]))   # the model's sampler_defaults: DDIM, 10 steps
    assert model.calls == list(range(901, 0, -100))
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("NoSuchScheduler")
