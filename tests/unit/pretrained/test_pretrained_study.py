"""The study checkpoints (``NAME-step<N>.qdelta``): ``export --steps`` writes them from a run folder with their cards,
they load through the shipped-checkpoint lookup as base + quantised delta, and the shipped set fits the package
budget."""
from __future__ import annotations

import torch
from omegaconf import OmegaConf

from i2am.adapters import create_model
from i2am.adapters._delta_checkpoint import read_delta
from i2am.data.toy.vitonhd import DEFAULT_WORLD
from i2am.pretrained import PACKAGE_BUDGET_BYTES, TOY_DIR, shipped_bytes, toy_card, toy_checkpoint, toy_names
from i2am.pretrained.export import export, main, sha256
from i2am.pretrained.study import STUDY_LEVELS, study_names


def _tiny_run(run_dir, steps):
    """A train run folder as ``i2am train`` leaves it: config.yaml and Lightning checkpoints whose weights move
    away from a random ``custom-toy`` step by step."""
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"model": {"name": "custom-toy"}}), run_dir / "config.yaml")
    state = create_model("custom-toy").state_dict()
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for step in steps:
        state = {k: v + 0.01 * torch.randn(v.shape, generator=generator) for k, v in state.items()}
        weights[step] = state
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": step},
                   run_dir / "checkpoints" / f"step={step}.ckpt")
    return weights


def test_export_steps_writes_loadable_study_checkpoints_with_their_cards(tmp_path, toy_data_dir):
    run_dir, out = tmp_path / "run", tmp_path / "toy"
    weights = _tiny_run(run_dir, [100, 200, 300])
    export("custom", run_dir, step=300, out_dir=out, data_dir=toy_data_dir, heldout_count=1)
    main(["custom", str(run_dir), "--steps", "200,100", "--data-dir", str(toy_data_dir), "--out-dir", str(out),
          "--pairs", "1"])
    assert study_names("custom", out) == ["custom-step100", "custom-step200"]     # step order
    base = {k: v.float() for k, v in create_model("custom-toy", checkpoint=out / "custom.safetensors")
            .state_dict().items()}
    for step in (100, 200):
        name = f"custom-step{step}"
        card, path = toy_card(name, out), toy_checkpoint(name, out)
        assert path.suffix == ".qdelta" and card["global_step"] == step and card["bytes"] == path.stat().st_size
        assert card["sha256"] == sha256(path)
        assert card["quantisation"]["base_sha256"] == sha256(out / "custom.safetensors")
        assert card["quantisation"]["levels"] == STUDY_LEVELS and f"[-{STUDY_LEVELS}, {STUDY_LEVELS}]" in card["stored"]
        assert set(card["heldout"]["full_precision"]) == {"ssim", "ssim_region", "ssim_mean_colour"}
        assert card["heldout"]["world"] == DEFAULT_WORLD and 0 < card["heldout"]["ssim"] < 1
        loaded_state = create_model("custom-toy", checkpoint=path).state_dict()
        for key, loaded in loaded_state.items():
            delta = weights[step][key] - base[key]
            rows = delta.reshape(1, -1) if delta.dim() <= 1 else delta.reshape(delta.shape[0], -1)
            half_step = (rows.abs().amax(dim=1) / STUDY_LEVELS / 2).reshape(-1, *[1] * (max(delta.dim(), 1) - 1))
            assert ((loaded - weights[step][key]).abs() <= half_step * (1 + 1e-5) + 1e-6).all(), (step, key)
        error = sum(float((loaded_state[k] - weights[step][k]).square().sum()) for k in base)
        delta = sum(float((weights[step][k] - base[k]).square().sum()) for k in base)
        assert abs(card["quantisation"]["relative_weight_error"] - (error / delta) ** 0.5) < 1e-6   # summation order


def test_the_shipped_study_set_spans_the_run_in_step_order_against_the_shipped_custom():
    names = study_names()
    steps = [toy_card(n)["global_step"] for n in names]
    assert len(names) >= 10 and steps == sorted(steps) and max(steps) < toy_card("custom")["global_step"]
    assert set(names) <= set(toy_names())
    for name in names:
        card = toy_card(name)
        assert card["sha256"] == sha256(toy_checkpoint(name))
        assert card["quantisation"]["base_sha256"] == sha256(toy_checkpoint("custom"))


def test_a_shipped_study_checkpoint_loads_bit_identically_twice():
    path = toy_checkpoint(study_names()[0])
    first, second = read_delta(path), read_delta(path)
    assert all(torch.equal(first[k], second[k]) for k in first)
    model = create_model("custom-toy", checkpoint=path)
    assert all(torch.equal(model.state_dict()[k], first[k]) for k in first)


def test_everything_shipped_in_the_package_stays_within_its_budget():
    assert shipped_bytes() <= PACKAGE_BUDGET_BYTES, f"{shipped_bytes() / 1e6:.2f} MB in {TOY_DIR.parent}"
