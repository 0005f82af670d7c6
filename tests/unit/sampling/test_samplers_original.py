"""The originals' samplers: the custom model's DDIM and LDM's PLMS against naive re-implementations kept here."""
import pytest
import torch
from torch import nn

from i2am.adapters import create_model
from i2am.adapters._base import DenoiseInputs
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.sampling.custom_ddim import custom_ddim_pairs
from i2am.sampling.plms import plms_timesteps
from i2am.sampling.sampler import Sampler, sample_seed


class ToyModel(nn.Module):
    """eps depends on x, t and the sample's context; records every call's (x, t)."""

    sampler_defaults = {"scheduler": "custom_ddim", "num_steps": 4, "guidance": None, "eta": 0.0,  # noqa: RUF012
                        "start_code": "noise"}
    latent_encoding = "mode"
    records_call = True

    def __init__(self, gain=0.1):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.gain = gain
        self.calls = []

    device = property(lambda self: self.anchor.device)
    dtype = property(lambda self: self.anchor.dtype)

    def denoise(self, x, t, inputs, guidance=None):
        self.calls.append((x.clone(), int(t), self.records_call))
        return self.gain * x * (1 + int(t) / 1000) + inputs.context.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    def encode_images(self, images):
        return images[:, :4, ::8, ::8]


def toy_inputs(ids, paste=True):
    ctx = torch.stack([torch.full((1, 2), float(ord(i[0]))) / 100 for i in ids])
    image = torch.stack([torch.randn(4, 16, 24, generator=torch.Generator().manual_seed(ord(i[0]))) for i in ids])
    mask = torch.zeros(len(ids), 1, 2, 3)
    mask[:, :, :, 1:] = 1          # generate the right two columns, keep the left one
    return DenoiseInputs(concat=None, context=ctx, uncond_context=ctx, latent_shape=(4, 2, 3), sample_ids=list(ids),
                         start_image=image, paste_mask=mask if paste else None)


def naive_custom_ddim(model, inputs, seed, tau=20):
    """v2/ddim.py DDIM_sampling with x_0 given, written out: float32 linear-sqrt betas, the list
    range(0, 1000, tau) + [999] walked backwards, fresh noise per step for the re-noised paste, predicted x0 out."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    alphas_bar = torch.cumprod(1 - betas, 0)
    process = list(range(0, 1000, tau)) + [999]
    gens = [torch.Generator().manual_seed(sample_seed(seed, s)) for s in inputs.sample_ids]
    draw = lambda: torch.stack([torch.randn(inputs.latent_shape, generator=g) for g in gens])
    x = draw()
    x_0 = model.encode_images(inputs.start_image)
    m = inputs.paste_mask
    for prev_idx, idx in zip(reversed(process[:-1]), reversed(process[1:])):
        eps = draw()
        noisy = alphas_bar[idx].sqrt() * x_0 + (1 - alphas_bar[idx]).sqrt() * eps
        x = noisy * (1 - m) + m * x
        out = model.denoise(x, torch.tensor(idx), inputs)
        x0 = (x - (1 - alphas_bar[idx]).sqrt() * out) / alphas_bar[idx].sqrt()
        x = alphas_bar[prev_idx].sqrt() * x0 + (1 - alphas_bar[prev_idx]).sqrt() * out
    return x0, x


def test_custom_ddim_timestep_list():
    pairs = custom_ddim_pairs(50)
    assert [t for t, _ in pairs] == [999] + list(range(980, 0, -20))
    assert [p for _, p in pairs] == list(range(980, -1, -20))
    assert custom_ddim_pairs(4) == [(999, 750), (750, 500), (500, 250), (250, 0)]


def test_custom_ddim_equals_naive_reference_and_returns_predicted_x0():
    inputs = toy_inputs(["a", "b"])
    seen = []
    out = Sampler(num_steps=50, seed=7, paste=True)(ToyModel(), inputs, callback=seen.append)
    x0, x_final = naive_custom_ddim(ToyModel(), inputs, seed=7)
    torch.testing.assert_close(out, x0, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out, x_final)                 # the last predicted x0, not the final x
    assert torch.equal(out, seen[-1]["denoised"])
    assert [s["t"] for s in seen] == [999] + list(range(980, 0, -20))


@pytest.mark.numeric
def test_custom_ddim_paste_touches_only_outside_the_mask_and_is_per_sample():
    inputs = toy_inputs(["a", "b"])
    slow, fast = ToyModel(gain=0.1), ToyModel(gain=0.5)
    Sampler(num_steps=4, seed=3, paste=True)(slow, inputs)
    Sampler(num_steps=4, seed=3, paste=True)(fast, inputs)
    keep = inputs.paste_mask.expand(-1, 4, -1, -1) == 0
    for (x_slow, t, _), (x_fast, _, _) in zip(slow.calls, fast.calls):
        assert torch.equal(x_slow[keep], x_fast[keep])        # outside: q_sample(z, t) whatever the model did
        if t != 999:
            assert not torch.allclose(x_slow[~keep], x_fast[~keep])
    alone = ToyModel()
    Sampler(num_steps=4, seed=3, paste=True)(alone, toy_inputs(["b"]))
    assert torch.equal(alone.calls[-1][0][0], slow.calls[-1][0][1])   # sample "b" alone = "b" in the batch
    no_paste = ToyModel()
    Sampler(num_steps=4, seed=3, paste=False)(no_paste, inputs)
    assert not torch.equal(no_paste.calls[1][0][keep], slow.calls[1][0][keep])


def test_custom_ddim_needs_a_mask_and_a_step_count_dividing_1000():
    with pytest.raises(ValueError, match="paste_mask"):
        Sampler(num_steps=4, paste=True)(ToyModel(), toy_inputs(["a"], paste=False))
    with pytest.raises(ValueError, match="visits 31 timesteps"):
        Sampler(num_steps=30)(ToyModel(), toy_inputs(["a"]))
    with pytest.raises(ValueError, match="custom DDIM's option"):
        Sampler(scheduler="ddim", num_steps=4, paste=True)(ToyModel(), toy_inputs(["a"]))


def naive_plms(model, inputs, x, steps):
    """ldm/models/diffusion/plms.py (eta 0) written out: make_ddim_timesteps('uniform') + 1, ddim_alphas /
    ddim_alphas_prev, pseudo improved Euler on the first step, Adams-Bashforth 2-4 after, old_eps capped at 3."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    acp = torch.cumprod(1 - betas, 0).float()
    ddim_t = torch.arange(0, 1000, 1000 // steps) + 1
    alphas, alphas_prev = acp[ddim_t], torch.cat([acp[:1], acp[ddim_t[:-1]]])
    time_range = ddim_t.flip(0).tolist()
    old_eps = []
    for i, step in enumerate(time_range):
        index = len(time_range) - i - 1
        t_next = time_range[min(i + 1, len(time_range) - 1)]

        def x_prev_and_x0(e_t, x=x, index=index):
            pred_x0 = (x - (1 - alphas[index]).sqrt() * e_t) / alphas[index].sqrt()
            return alphas_prev[index].sqrt() * pred_x0 + (1 - alphas_prev[index]).sqrt() * e_t, pred_x0

        e_t = model.denoise(x, torch.tensor(step), inputs)
        if len(old_eps) == 0:
            x_prev, _ = x_prev_and_x0(e_t)
            e_t_prime = (e_t + model.denoise(x_prev, torch.tensor(t_next), inputs)) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x, _ = x_prev_and_x0(e_t_prime)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
    return x


@pytest.mark.parametrize("steps", [1, 2, 5, 50])
def test_plms_equals_naive_reference(steps):
    inputs = toy_inputs(["a", "b"], paste=False)
    model = ToyModel()
    out = Sampler(scheduler="plms", num_steps=steps, seed=2)(model, inputs)
    x_T = torch.stack([torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(sample_seed(2, s)))
                       for s in ("a", "b")])
    torch.testing.assert_close(out, naive_plms(ToyModel(), inputs, x_T, steps), rtol=1e-6, atol=1e-6)
    ts = plms_timesteps(steps)
    assert [t for _, t, _ in model.calls] == [ts[0], ts[min(1, steps - 1)]] + ts[1:]   # corrector at the next t
    assert [rec for _, _, rec in model.calls] == [True, False] + [True] * (steps - 1)  # ... and not a step


def test_plms_timesteps_and_eta():
    assert plms_timesteps(50) == list(range(981, 0, -20)) and plms_timesteps(100) == list(range(991, 0, -10))
    with pytest.raises(ValueError, match="eta"):
        Sampler(scheduler="plms", num_steps=4, eta=0.5)(ToyModel(), toy_inputs(["a"]))


def test_plms_capture_sees_one_call_per_step():
    model = create_model("pbe-tiny")
    batch = {"image": torch.rand(1, 3, 128, 96) * 2 - 1, "reference": torch.rand(1, 3, 128, 96) * 2 - 1,
             "inpaint_mask": torch.ones(1, 1, 128, 96), "sample_id": ["s0"]}
    calls = []
    handle = model.step_module.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with AttributionCapture(model, CaptureConfig(num_steps=4, time_groups=2)) as capture:
            model.sample(batch, Sampler(scheduler="plms", num_steps=4))
    finally:
        handle.remove()
    assert len(calls) == 5 and capture.steps_seen == 4      # 4 steps + the uncounted corrector call
    assert torch.isfinite(capture.maps().r2g.ulam).all()
