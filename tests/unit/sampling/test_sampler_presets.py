"""Per-model sampler presets (conf/sampler/<model>_release.yaml, <model>_paper.yaml) and each model's default."""
from functools import cache

import pytest
from helpers.paths import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from i2am.adapters import create_model

CONF = REPO / "conf"
KEYS = ("scheduler", "num_steps", "guidance", "eta", "start_code", "paste")

# (scheduler, steps, guidance, eta, start code, paste), seed: what each original's script / the paper's runs used.
PRESETS = {
    "pbe_release": (("plms", 50, 5.0, 0.0, "noise", False), 321),          # README: --plms --scale 5 --seed 321
    "pbe_paper": (("ddim", 50, 5.0, 0.0, "noise", False), 321),            # inference_i2am.py
    "dcivton_release": (("plms", 100, 1.0, 0.0, "q_sample", False), 23),   # test.sh: --plms --ddim_steps 100 --scale 1
    "dcivton_paper": (("ddim", 50, 1.0, 0.0, "q_sample", False), 23),
    "stableviton_release": (("plms", 50, 1.0, 0.0, "q_sample", False), 0),  # inference.py: PLMSSampler, 50, eta 0
    "stableviton_paper": (("ddim", 50, 1.0, 0.0, "q_sample", False), 0),
    "custom_release": (("custom_ddim", 50, 5.0, 0.0, "noise", True), 23),  # test_model.py + ddim.py, args.py seed
    "custom_paper": (("custom_ddim", 50, 5.0, 0.0, "noise", True), 23),
}
# sampler=default (the attribute task's default): each adapter's own sampler_defaults = its paper preset.
DEFAULT_IS = {"pbe": "pbe_paper", "dcivton": "dcivton_paper", "stableviton": "stableviton_paper",
              "custom": "custom_paper"}


@cache
def meta_model(name):
    return create_model(name, device="meta")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_settings(preset):
    sampler = instantiate(OmegaConf.load(CONF / "sampler" / f"{preset}.yaml"))
    settings, seed = PRESETS[preset]
    model = meta_model(preset.split("_")[0])
    assert tuple(sampler.settings(model)[k] for k in KEYS) == settings and sampler.seed == seed


@pytest.mark.parametrize("model_name", sorted(DEFAULT_IS))
def test_each_models_default_is_its_paper_preset(model_name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("attribute", overrides=[f"model={model_name}", "model.checkpoint=null", "model.device=meta"])
    assert cfg.sampler.scheduler is None                       # sampler=default defers to the model
    model, sampler = instantiate(cfg.model), instantiate(cfg.sampler)
    assert tuple(sampler.settings(model)[k] for k in KEYS) == PRESETS[DEFAULT_IS[model_name]][0]


def test_a_models_default_paste_does_not_follow_it_to_another_sampler():
    model = meta_model("custom")
    sampler = instantiate(OmegaConf.load(CONF / "sampler" / "ddim.yaml"))
    assert sampler.settings(model)["scheduler"] == "ddim" and sampler.settings(model)["paste"] is False
