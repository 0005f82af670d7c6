"""The pretrained toy checkpoints shipped in i2am/pretrained/toy/: each loads bit-identically and generates held-out
toy pairs better than the garment's mean colour, by the margin the README states."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from i2am.adapters import create_model
from i2am.data.toy.vitonhd import DEFAULT_WORLD
from i2am.pretrained import HELDOUT_MARGIN, toy_card, toy_checkpoint, toy_names
from i2am.pretrained.export import sha256, shipped_state
from i2am.pretrained.heldout import SAMPLER, heldout_batch, heldout_scores

NAMES = toy_names()
FULL = [n for n in NAMES if toy_checkpoint(n).suffix == ".safetensors"]   # the study set: test_pretrained_study.py
FINAL = [n for n in NAMES if "-step" not in n]   # intermediates are early on purpose (the correlation's low end)


def test_the_three_final_toy_models_are_shipped_as_full_files():
    assert {"custom", "refined", "control"} <= set(FULL)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """The 4 held-out pairs of each toy world version a card names, written once."""
    data_dir, batches = tmp_path_factory.mktemp("toy"), {}
    return lambda world: batches.setdefault(world, heldout_batch(data_dir, 4, world))


@pytest.mark.parametrize("name", FULL)
def test_shipped_checkpoint_round_trips_bit_identically(name, tmp_path):
    card = toy_card(name)
    path = toy_checkpoint(name)
    assert card["sha256"] == sha256(path) and card["bytes"] == path.stat().st_size
    model = create_model(card["model"], checkpoint=path)
    stored, again = load_file(str(path)), shipped_state(model)
    assert set(stored) == set(again)
    for key, tensor in stored.items():
        assert again[key].dtype == tensor.dtype and torch.equal(again[key], tensor), key


@pytest.mark.numeric
@pytest.mark.parametrize("name", FINAL)
def test_shipped_checkpoint_beats_the_mean_colour_fill_on_heldout_pairs(name, heldout):
    card = toy_card(name)
    model = create_model(card["model"], checkpoint=toy_checkpoint(name)).eval()
    scores = heldout_scores(model, heldout(card["heldout"].get("world", DEFAULT_WORLD)), SAMPLER)
    generated, baseline = float(scores["ssim_region"].mean()), float(scores["ssim_mean_colour"].mean())
    assert generated > baseline + HELDOUT_MARGIN, (name, generated, baseline)


def test_cards_name_their_reproducing_command_and_sampler():
    for name in NAMES:
        card = toy_card(name)
        assert card["command"].startswith("i2am train experiment=toy_pretrain_"), card
        assert card["heldout"]["sampler"] == SAMPLER and card["model"] == "custom-toy"
        json.dumps(card)
