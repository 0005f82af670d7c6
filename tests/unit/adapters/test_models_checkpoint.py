"""Checkpoint files: bad files and bad keys fail with errors naming them; reports; diffusers folders; schedule."""
import pytest
import torch
from diffusers import DDIMScheduler

from i2am.adapters import create_model
from i2am.adapters._checkpoint import CheckpointError, ldm_schedule_buffers, read_state_dict
from i2am.sampling.sampler import LDM_DDIM

UNET_KEY = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


@pytest.fixture(scope="module")
def pbe():
    return create_model("pbe-tiny")


@pytest.fixture(scope="module")
def exported(pbe):
    return pbe.export_checkpoint()


def test_removed_key_is_named(pbe, exported):
    state = {k: v for k, v in exported.items() if k != UNET_KEY}
    with pytest.raises(CheckpointError, match=r"1 missing: " + UNET_KEY.replace(".", r"\.")):
        pbe.load_checkpoint(state)


def test_changed_shape_is_named_with_both_shapes(pbe, exported):
    state = dict(exported, **{UNET_KEY: torch.zeros(16, 7)})
    with pytest.raises(CheckpointError, match=r"shape mismatch: " + UNET_KEY.replace(".", r"\.")
                       + r": checkpoint \(16, 7\) vs model \(16, 32\)"):
        pbe.load_checkpoint(state)


def test_fused_qkv_with_wrong_size_is_named(pbe, exported):
    key = "cond_stage_model.mapper.resblocks.0.attn.c_qkv.weight"
    state = dict(exported, **{key: torch.zeros(10, 32)})
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        pbe.load_checkpoint(state)


def test_unexpected_key_is_named_and_ignorable_keys_are_reported(pbe, exported):
    with pytest.raises(CheckpointError, match=r"1 unexpected: model\.diffusion_model\.extra"):
        pbe.load_checkpoint(dict(exported, **{"model.diffusion_model.extra": torch.zeros(1)}))
    ids = "cond_stage_model.transformer.vision_model.embeddings.position_ids"
    report = pbe.load_checkpoint(dict(exported, **{ids: torch.arange(5)[None]}))
    assert report.ok and ids in report.ignored and "betas" in report.ignored


def test_non_strict_load_reports_without_raising(pbe, exported):
    before = pbe.unet.conv_in.weight.clone()
    state = {k: v for k, v in exported.items() if k != UNET_KEY}
    report = pbe.load_checkpoint(state, strict=False)
    assert report.missing == [UNET_KEY] and torch.equal(pbe.unet.conv_in.weight, before)


def test_dcivton_accepts_and_ignores_vgg():
    model = create_model("dcivton-tiny")
    report = model.load_checkpoint(dict(model.export_checkpoint(), **{"vgg.conv1_1.weight": torch.zeros(64, 3, 3, 3)}))
    assert report.ok and "vgg.conv1_1.weight" in report.ignored


def test_unreadable_files_are_named(pbe, exported, tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.ckpt"):
        pbe.load_checkpoint(text)
    full = tmp_path / "model.ckpt"
    torch.save({"state_dict": exported}, full)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        pbe.load_checkpoint(truncated)
    bad_st = tmp_path / "broken.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        read_state_dict(bad_st)
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        pbe.load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"epoch": 3}, tmp_path / "no_weights.ckpt")
    with pytest.raises(CheckpointError, match="no_weights.ckpt: holds no state dict"):
        pbe.load_checkpoint(tmp_path / "no_weights.ckpt")


def test_pbe_diffusers_folder_round_trip(pbe, tmp_path):
    pbe.save_diffusers_folder(tmp_path / "pbe")
    fresh = create_model("pbe-tiny")
    assert fresh.load_checkpoint(tmp_path / "pbe").ok
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in pbe.state_dict().items())
    (tmp_path / "pbe" / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vae: no weights file"):
        fresh.load_checkpoint(tmp_path / "pbe")


def test_exported_schedule_buffers_match_ldm_and_the_ddim_scheduler(exported):
    buffers = ldm_schedule_buffers()
    assert set(buffers) <= set(exported)
    torch.testing.assert_close(buffers["betas"][[0, -1]], torch.tensor([0.00085, 0.012]))
    ddim = DDIMScheduler.from_config(LDM_DDIM)
    torch.testing.assert_close(buffers["alphas_cumprod"], ddim.alphas_cumprod.float())
    acp = ddim.alphas_cumprod.double()
    t = 500   # posterior variance of DDPM, by hand
    expected = (1 - acp[t - 1]) / (1 - acp[t]) * (1 - acp[t] / acp[t - 1])
    torch.testing.assert_close(buffers["posterior_variance"][t], expected.float())
