"""Generation quality (docs/method.md §4.4): closed-form FID/KID/SSIM cases with injected feature networks, repaint,
and the offline errors of the default backbones."""
import importlib.util

import pytest
import torch
from torch import nn

from i2am.measures import backbones
from i2am.measures.backbones import RandomConvFeatures, inception_weights_path
from i2am.measures.quality import QualityEvaluator, repaint

pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")


class PixelFeatures(nn.Module):
    """Features = 40 * pixel - 20 of 1x1 images (pixels stay in [0, 1]), so a test controls the feature sets exactly."""

    num_features = 3
    name = "pixels"

    def forward(self, images):
        return images.flatten(1).double() * 40 - 20


def exact_gaussian_features(n, mean, std, seed):
    """[n, d] samples whose sample mean is `mean` and sample covariance is diag(std^2) exactly."""
    z = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    cholesky = torch.linalg.cholesky(z.T @ z / (n - 1))
    z = z @ torch.linalg.inv(cholesky).T
    return torch.tensor(mean, dtype=torch.float64) + z * torch.tensor(std, dtype=torch.float64)


def as_images(features):
    assert features.abs().max() < 20
    return ((features + 20) / 40).float()[:, :, None, None]


def test_fid_of_identical_sets_is_zero():
    images = torch.rand(40, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    quality = QualityEvaluator(metrics=["fid"], feature="random-conv", size=None, value_range=(0, 1))
    quality.update_real(images)
    quality.update_generated(images)
    result = quality.compute()
    assert list(result) == ["fid_randconv"]  # the toy backbone never reports as "fid"
    assert result["fid_randconv"] == pytest.approx(0.0, abs=1e-3)


def test_fid_of_two_gaussian_feature_sets_is_the_analytic_frechet_distance():
    # mu1 = 0, mu2 = (1, 2, 0); Sigma1 = diag(1, 4, 9), Sigma2 = diag(4, 4, 1):
    # |mu1 - mu2|^2 + sum (sigma1 - sigma2)^2 = 5 + (1 + 0 + 4) = 10
    real = exact_gaussian_features(200, [0.0, 0.0, 0.0], [1.0, 2.0, 3.0], seed=1)
    fake = exact_gaussian_features(300, [1.0, 2.0, 0.0], [2.0, 2.0, 1.0], seed=2)
    quality = QualityEvaluator(metrics=["fid"], feature=PixelFeatures(), size=None, value_range=(0, 1))
    quality.update_real(as_images(real[:120]))
    quality.update_real(as_images(real[120:]))
    quality.update_generated(as_images(fake))
    assert quality.compute()["fid_pixels"] == pytest.approx(10.0, abs=1e-3)


def test_kid_with_one_full_subset_by_hand():
    # 1-d features, kernel k(x, y) = (x * y + 1)^3; real {0, 1}, fake {1, 2}:
    # within real 2 * k(0,1) / 2 = 1; within fake 2 * k(1,2) / 2 = 27; cross 2 * (1 + 1 + 8 + 27) / 4 = 18.5
    class ScalarFeature(nn.Module):
        num_features = 1

        def forward(self, images):
            return images[:, :1].flatten(1).double() * 2

    quality = QualityEvaluator(metrics=["kid"], feature=ScalarFeature(), size=None, value_range=(0, 1),
                               kid_subsets=1, kid_subset_size=2)
    quality.update_real(torch.tensor([0.0, 0.5]).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    quality.update_generated(torch.tensor([0.5, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    result = quality.compute()
    assert result["kid_custom"] == pytest.approx(1 + 27 - 18.5)
    assert result["kid_std_custom"] == pytest.approx(0.0)


def test_kid_with_too_few_images_names_the_setting():
    quality = QualityEvaluator(metrics=["kid"], feature=PixelFeatures(), size=None, kid_subset_size=50)
    quality.update_real(torch.zeros(4, 3, 1, 1))
    quality.update_generated(torch.zeros(4, 3, 1, 1))
    with pytest.raises(ValueError, match="kid_subset_size"):
        quality.compute()


def test_ssim_of_constant_images_is_the_luminance_term():
    # constant images: the contrast/structure term is C2 / C2 = 1; luminance (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = 0.01 ** 2
    generated, target = torch.full((2, 3, 16, 16), 0.01), torch.full((2, 3, 16, 16), 0.05)
    quality = QualityEvaluator(metrics=["ssim"], size=None, value_range=(0, 1))
    quality.update_paired(generated, target)
    expected = (2 * 0.01 * 0.05 + c1) / (0.01 ** 2 + 0.05 ** 2 + c1)  # 0.4074, vs 0.3846 without C1
    assert quality.compute()["ssim"] == pytest.approx(expected, abs=1e-4)


def test_injected_lpips_network_gets_minus_one_to_one_images_and_is_averaged_per_image():
    class MeanSquaredDistance(nn.Module):
        def forward(self, a, b):
            assert a.min() >= -1 and a.max() <= 1
            return (a - b).pow(2).flatten(1).mean(1)

    quality = QualityEvaluator(metrics=["lpips"], lpips=MeanSquaredDistance(), size=None, value_range=(0, 1))
    quality.update_paired(torch.full((3, 3, 4, 4), 0.5), torch.full((3, 3, 4, 4), 0.25))  # 0 vs -0.5 -> 0.25
    quality.update_paired(torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.5))   # identical -> 0
    assert quality.compute()["lpips_custom"] == pytest.approx(3 * 0.25 / 4)


def test_repaint_keeps_the_original_outside_the_mask():
    generated, original = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    torch.testing.assert_close(repaint(generated, original, mask), mask.expand(1, 3, 4, 4))
    # paired + repaint: a generation that differs from the target only outside the mask scores SSIM 1
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    generated = torch.where(torch.arange(16).view(1, 1, 16, 1) < 8, target, 1 - target)
    inside = (torch.arange(16).view(1, 1, 16, 1) < 8).float().expand(1, 1, 16, 16)
    quality = QualityEvaluator(metrics=["ssim"], size=None, value_range=(0, 1), repaint=True)
    quality.update_paired(generated, target, inpaint_mask=inside)
    assert quality.compute()["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_images_are_resized_to_the_protocol_size():
    seen = []

    class Recorder(PixelFeatures):
        def forward(self, images):
            seen.append(tuple(images.shape[-2:]))
            return images.mean(dim=(2, 3)).double()

    quality = QualityEvaluator(metrics=["fid"], feature=Recorder(), size=(8, 6))
    quality.update_real(torch.zeros(2, 3, 32, 24))
    assert seen == [(8, 6)]


def test_random_conv_features_are_fixed_by_the_seed():
    images = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(RandomConvFeatures(seed=3)(images), RandomConvFeatures(seed=3)(images))
    assert not torch.allclose(RandomConvFeatures(seed=3)(images), RandomConvFeatures(seed=4)(images))
    assert RandomConvFeatures()(images).shape == (2, 64)


def test_missing_inception_weights_say_which_file_goes_where(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        inception_weights_path()
    message = str(error.value)
    assert backbones.INCEPTION_FILE in message and str(tmp_path / "checkpoints") in message
    assert "inception_weights=" in message
    (tmp_path / "w.pth").write_bytes(b"")
    assert inception_weights_path(tmp_path / "w.pth") == tmp_path / "w.pth"


def test_missing_optional_packages_fail_only_when_the_default_backbone_is_requested(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch_fidelity", "torchvision")
                        else real_find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"torch-fidelity.*i2am\[metrics\]"):
        QualityEvaluator(metrics=["fid"])
    with pytest.raises(ModuleNotFoundError, match="torchvision"):
        QualityEvaluator(metrics=["lpips"])
    QualityEvaluator(metrics=["ssim"])  # needs no backbone


def test_missing_alexnet_weights_say_which_file_goes_where(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "torchvision" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=backbones.ALEXNET_FILE):
        QualityEvaluator(metrics=["lpips"])
