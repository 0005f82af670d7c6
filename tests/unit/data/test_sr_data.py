"""SR data: folder layouts, seeded synthetic degradation, the toy set built from scikit-image photographs."""
import cv2
import numpy as np
import pytest
import torch

from i2am.data.sr import DegradationConfig, build_sr_dataset, degrade, draw_degradation, paired_folders, toy_photographs


def write(path, height=32, width=48, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2 ** 32)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if value is None else \
        np.full((height, width, 3), value, np.uint8)
    cv2.imwrite(str(path), image)
    return image


def test_degradation_is_deterministic_for_a_seed_and_varies_across_seeds():
    hr = toy_photographs(1)["astronaut"][:128, :128]
    config = DegradationConfig(scale=4)
    first = degrade(hr, draw_degradation(config, 7))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, degrade(hr, draw_degradation(config, 7)))
    assert draw_degradation(config, 7) != draw_degradation(config, 8)
    assert not np.array_equal(first, degrade(hr, draw_degradation(config, 8)))


def test_degradation_of_a_flat_image_stays_near_its_value():
    flat = np.full((64, 64, 3), 128, np.uint8)
    config = DegradationConfig(scale=2, noise_sigma=(0.0, 0.0), jpeg_quality=(95, 95))
    lr = degrade(flat, draw_degradation(config, 0))
    assert lr.shape == (32, 32, 3) and np.abs(lr.astype(int) - 128).max() <= 2


def test_layouts_pair_hr_and_lr_by_name(tmp_path):
    write(tmp_path / "realsr/Canon/Test/4/Canon_001_HR.png", 64, 64)
    write(tmp_path / "realsr/Canon/Test/4/Canon_001_LR4.png", 16, 16)
    write(tmp_path / "realsr/Nikon/Test/4/Nikon_007_HR.png", 64, 64)
    write(tmp_path / "realsr/Nikon/Test/4/Nikon_007_LR4.png", 16, 16)
    write(tmp_path / "div2k/DIV2K_valid_HR/0801.png", 64, 96)
    write(tmp_path / "div2k/DIV2K_valid_LR_bicubic/X4/0801x4.png", 16, 24)
    write(tmp_path / "drealsr/Test_x4/test_HR/DSC_1.png", 64, 64)
    write(tmp_path / "drealsr/Test_x4/test_LR/DSC_1.png", 16, 16)
    realsr = build_sr_dataset("realsr", tmp_path / "realsr", size=(32, 32))
    assert [p.sample_id for p in realsr.pairs] == ["Canon_001", "Nikon_007"]
    assert realsr.pairs[0].lr.name == "Canon_001_LR4.png"
    div2k = build_sr_dataset("div2k", tmp_path / "div2k", size=(32, 48))
    assert div2k.pairs[0].lr.name == "0801x4.png"
    sample = div2k[0]
    assert sample["image"].shape == sample["lr"].shape == (3, 32, 48) and sample["sample_id"] == "0801"
    assert sample["image"].min() >= -1 and sample["image"].max() <= 1
    assert sample["lr"].min() >= 0 and sample["lr"].max() <= 1
    assert build_sr_dataset("drealsr", tmp_path / "drealsr", size=(32, 32)).pairs[0].sample_id == "DSC_1"


def test_paired_values_and_missing_lr(tmp_path):
    write(tmp_path / "hr/x.png", 16, 16, value=255)
    write(tmp_path / "lr/x.png", 4, 4, value=0)
    sample = build_sr_dataset("paired", hr_dir=tmp_path / "hr", lr_dir=tmp_path / "lr", size=(16, 16))[0]
    assert torch.equal(sample["image"], torch.ones(3, 16, 16)) and torch.equal(sample["lr"], torch.zeros(3, 16, 16))
    write(tmp_path / "hr/y.png", 16, 16)
    with pytest.raises(FileNotFoundError, match="no LR image .*y"):
        paired_folders(tmp_path / "hr", tmp_path / "lr")


def test_synthetic_hr_folder_is_seeded(tmp_path):
    for name in ("a", "b"):
        write(tmp_path / f"hr/{name}.png", 64, 64)
    first = build_sr_dataset("synthetic", tmp_path / "hr", size=(64, 64), seed=3)
    again = build_sr_dataset("synthetic", tmp_path / "hr", size=(64, 64), seed=3)
    other = build_sr_dataset("synthetic", tmp_path / "hr", size=(64, 64), seed=4)
    assert torch.equal(first[1]["lr"], again[1]["lr"]) and not torch.equal(first[1]["lr"], other[1]["lr"])
    assert torch.equal(first[1]["image"], other[1]["image"])


def test_toy_set_from_scikit_image_photographs(tmp_path):
    dataset = build_sr_dataset("toy", tmp_path / "toy", size=(64, 64), toy_count=3)
    assert [p.sample_id for p in dataset.pairs] == ["astronaut", "chelsea", "coffee"]
    sample = dataset[0]
    hr01 = (sample["image"] + 1) / 2
    error = (hr01 - sample["lr"]).abs().mean()
    assert 0.005 < error < 0.2      # the LR is a degraded copy of the HR, not noise and not the HR itself
    assert (tmp_path / "toy/LR/astronaut.png").is_file()
    with pytest.raises(ValueError, match="unknown layout"):
        build_sr_dataset("nope", tmp_path)
