"""The complete randomisation: every trainable parameter of each shipped checkpoint and each ``*-tiny`` adapter lies
in a stage, each stage changes exactly its own parameters, and the model is restored afterwards."""
import hashlib

import pytest
import torch

from i2am.adapters import create_model, list_models
from i2am.evaluation.randomization import complete_stages, covered_parameters, randomized, uncovered
from i2am.pretrained import toy_card, toy_checkpoint, toy_names

TINY = [n for n in list_models() if n.endswith("-tiny")]   # list_models imports every family first


def hashes(module):
    return {n: hashlib.sha256(t.detach().float().cpu().numpy().tobytes()).hexdigest()
            for n, t in [*module.named_parameters(), *module.named_buffers()]}


def names_of(model, modules):
    ids = {id(t) for m in modules for t in [*m.parameters(), *m.buffers()]}
    return {n for n, t in [*model.named_parameters(), *model.named_buffers()] if id(t) in ids}


def shipped(name):
    model = create_model(toy_card(name).get("model", "custom-toy"))
    model.load_checkpoint(toy_checkpoint(name))
    return model


@pytest.mark.parametrize("name", TINY)
def test_every_trainable_parameter_of_each_tiny_adapter_is_covered(name):
    model = create_model(name, device="meta")
    missing = uncovered(model, complete_stages(model))
    assert not missing, f"{name}: parameters no randomisation stage re-initialises: {missing}"


@pytest.mark.parametrize("name", toy_names())
def test_every_trainable_parameter_of_each_shipped_checkpoint_is_covered(name):
    model = shipped(name)
    stages = complete_stages(model)
    assert not uncovered(model, stages), name
    names = [n for n, _ in stages]
    assert {"projector", "uncond_context"} <= set(names)       # the token projector and the learned null context
    assert names.index("projector") > names.index("in")        # after the denoiser, from the output side


def test_each_stage_changes_exactly_its_parameters_and_the_model_is_restored():
    model = shipped(toy_names()[0])
    before = hashes(model)
    stages = complete_stages(model)
    for k, (stage, modules) in enumerate(stages):
        owned = names_of(model, modules)
        with randomized([stages[k]], seed=1):
            during = hashes(model)
        changed = {n for n in before if during[n] != before[n]}
        learned = {n for n in owned if n in covered_parameters(model) and "norm" not in n and not n.endswith("bias")}
        assert changed <= owned, (stage, changed - owned)
        assert learned <= changed, (stage, learned - changed)   # every learned weight re-drawn (norms may stay 1)
        assert hashes(model) == before, stage                    # restored exactly
    with randomized(stages, seed=2):
        during = hashes(model)
    assert {n for n in before if during[n] != before[n]} >= set(covered_parameters(model)) - {
        n for n in covered_parameters(model) if "norm" in n or n.endswith("bias")}
    assert hashes(model) == before


def test_seeds_draw_different_models():
    model = shipped(toy_names()[0])
    stages = complete_stages(model)
    drawn = []
    for seed in (0, 1):
        with randomized([s for s in stages if s[0] == "uncond_context"], seed=seed):
            drawn.append(model.uncond_context.detach().clone())
    assert not torch.equal(drawn[0], drawn[1])
