"""PASD and the faithfulness path: TokenKnockout works on its pixel-aware (PACA) layers, whose keys are ControlNet
features on the query grid; the curves, counterfactuals and randomisation refuse it with the reason (PASD samples
with its own loop, which the checks' re-runs through the sampler do not reproduce). docs/faithfulness.md, "Models"."""
import pytest
import torch

from i2am.attribution import CaptureConfig
from i2am.attribution.knockout import TokenKnockout
from i2am.metrics.evaluator import SampleContext
from i2am.metrics.faithfulness import g2r_curves, r2g_counterfactuals
from i2am.metrics.faithfulness_evaluator import FaithfulnessEvaluator
from i2am.metrics.randomization import randomization_curves
from i2am.models import create_model
from i2am.models.sampler import Sampler


@pytest.fixture(scope="module")
def pasd():
    """pasd-tiny with its ControlNet's zero convs made non-zero: freshly built, the ControlNet residuals (the PACA
    keys and values) are all 0, so the output cannot depend on which of them a query reads."""
    adapter = create_model("pasd-tiny").eval()
    torch.manual_seed(0)
    with torch.no_grad():
        controlnet = adapter.controlnet
        for conv in [controlnet.controlnet_cond_embedding.conv_out, *controlnet.controlnet_down_blocks,
                     controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.3)
    return adapter


def batch():
    return {"lr": torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)), "sample_id": ["p0"]}


class ConditionalEmptyReference:
    """A PACA attention whose conditional half reads an empty reference (zero key tokens): its output is the output
    projection's bias alone; the unconditional half runs unchanged."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        half = out.shape[0] // 2                                  # PASD's CFG batch is [uncond, cond]
        assert not attn.residual_connection and attn.rescale_output_factor == 1.0
        empty = attn.to_out[0].bias.expand_as(out[half:])
        return torch.cat([out[:half], empty])


def test_knockout_on_the_paca_layers(pasd):
    sampler = Sampler(num_steps=2)
    plain = pasd.sample(batch(), sampler=sampler)["images"]
    scores = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    with TokenKnockout(pasd) as knockout:
        assert len(knockout.layers) == 12
        none = pasd.sample(batch(), sampler=sampler)["images"]
        knockout.delete(scores, 0.5)
        half = pasd.sample(batch(), sampler=sampler)["images"]
        knockout.delete(scores, 1.0)
        removed = pasd.sample(batch(), sampler=sampler)["images"]
    assert torch.equal(none, plain)                     # knockout of no token is bit-identical
    assert (half - plain).abs().max() > 1e-4            # the PACA keys matter
    layers = pasd.attribution_layers()
    originals = [spec.module.processor for spec in layers]
    for spec in layers:
        spec.module.set_processor(ConditionalEmptyReference(spec.module.processor))
    try:
        empty = pasd.sample(batch(), sampler=sampler)["images"]
    finally:
        for spec, processor in zip(layers, originals):
            spec.module.set_processor(processor)
    torch.testing.assert_close(removed, empty, atol=1e-5, rtol=0)   # knockout of all = an empty reference


def test_the_checks_refuse_pasd_with_the_reason(pasd, tmp_path):
    sampler, sample, scores = Sampler(num_steps=2), batch(), torch.rand(1, 16, 16)
    reason = "own loop.*start_code='pasd'"
    with pytest.raises(ValueError, match=reason):
        g2r_curves(pasd, sampler, sample, scores, sample_id="p0")
    with pytest.raises(ValueError, match=reason):
        r2g_counterfactuals(pasd, sampler, sample, scores, variants=("null",))
    with pytest.raises(ValueError, match=reason):
        randomization_curves(pasd, sampler, sample, CaptureConfig(num_steps=2, time_groups=1))
    ctx = SampleContext(sample_id="p0", sample=sample, maps=None, rendered={}, generated=torch.zeros(1, 3, 128, 128),
                        adapter=pasd, sampler=sampler, sample_dir=tmp_path / "p0")
    with pytest.raises(ValueError, match=reason):
        FaithfulnessEvaluator(samples=1).update(ctx)
