"""Generation quality with the protocol of docs/method.md §4.4, through torchmetrics.

- FID and KID are unpaired: real test images (``update_real``) vs outputs of the unpaired run (``update_generated``).
- SSIM and LPIPS are paired: outputs of the paired run vs their ground truth (``update_paired``).
- All images are resized to ``size`` first (the protocol evaluates VITON-HD at 512x384, bicubic).
- ``repaint``: paste the generated region into the original image outside the inpainting mask before scoring.

Reported names: ``fid``, ``kid``, ``kid_std``, ``ssim``, ``lpips``. A backbone other than Inception (FID/KID) or
AlexNet (LPIPS) gets its name appended (``fid_randconv``, ``lpips_custom``): such numbers never pass for the paper's.

Departures from the authors' scripts, all small: FID uses torch-fidelity's Inception port (pytorch-fid uses the same
TF weights with a slightly different resize); SSIM is torchmetrics' Gaussian SSIM on [0, 1] (pytorch_msssim with
data_range=255 differs only at the borders); KID uses proper [0, 1] inputs (the authors' ``kid_eval.py`` probably
truncated them to {0, 1}, §4.4).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

# Imported from their modules: torchmetrics.image only re-exports FID/KID when torch-fidelity is installed.
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.image.ssim import StructuralSimilarityIndexMeasure

from i2am.measures.backbones import InceptionFeatures, RandomConvFeatures, require_lpips_alexnet

QUALITY_METRICS = ("fid", "kid", "ssim", "lpips")


def repaint(generated: Tensor, original: Tensor, inpaint_mask: Tensor) -> Tensor:
    """The generated image inside the mask, the original outside. Images [B, C, H, W]; mask [B, 1, H, W], 1 = inside."""
    mask = inpaint_mask.to(generated.dtype)
    return generated * mask + original.to(generated.dtype) * (1 - mask)


def _feature_network(feature, inception_weights) -> tuple[nn.Module, str]:
    """(network, name suffix of the reported metric) for ``feature``: "inception", "random-conv" or an nn.Module."""
    if isinstance(feature, nn.Module):
        return feature, "_" + getattr(feature, "name", "custom")
    if feature == "inception":
        return InceptionFeatures(inception_weights), ""
    if feature == "random-conv":
        return RandomConvFeatures(), "_" + RandomConvFeatures.name
    raise ValueError(f"quality.feature={feature!r}: use 'inception', 'random-conv' or an nn.Module")


class QualityEvaluator(nn.Module):
    """FID, KID, SSIM and LPIPS of generated images; images arrive in ``value_range`` ([-1, 1] in i2am batches).

    metrics: which of ("fid", "kid", "ssim", "lpips") to compute; only those build their backbone.
    feature: FID/KID features: "inception" (needs the ``metrics`` extra and its weights file), "random-conv" (toy,
        not comparable) or an nn.Module mapping [N, 3, H, W] images in [0, 1] to [N, D] features.
    inception_weights: explicit path of the Inception weights file (default: the torch hub cache).
    lpips: "alex" (torchmetrics LPIPS, needs torchvision and AlexNet weights) or an nn.Module mapping two [N, 3, H, W]
        batches in [-1, 1] to [N] distances.
    size: (H, W) every image is resized to (bicubic, antialiased) before scoring; None keeps the input size.
    kid_subsets, kid_subset_size: KID's subsets (protocol: subset_size=50); each set needs >= kid_subset_size images.
    """

    def __init__(self, metrics: Sequence[str] = QUALITY_METRICS, feature="inception", inception_weights=None,
                 lpips="alex", size: Sequence[int] | None = (512, 384), value_range: Sequence[float] = (-1.0, 1.0),
                 repaint: bool = False, kid_subsets: int = 100, kid_subset_size: int = 50):
        super().__init__()
        unknown = set(metrics) - set(QUALITY_METRICS)
        if unknown:
            raise ValueError(f"quality.metrics: unknown {sorted(unknown)}; choose from {QUALITY_METRICS}")
        self.metric_names = tuple(metrics)
        self.size = tuple(size) if size is not None else None
        self.value_range = tuple(float(v) for v in value_range)
        self.repaint = repaint
        self.suffix = {}
        if "fid" in metrics or "kid" in metrics:
            network, suffix = _feature_network(feature, inception_weights)
            self.suffix["fid"] = self.suffix["kid"] = suffix
            if "fid" in metrics:
                self.fid = FrechetInceptionDistance(feature=network, normalize=True, reset_real_features=True)
            if "kid" in metrics:
                self.kid = KernelInceptionDistance(feature=network, normalize=True, subsets=kid_subsets,
                                                   subset_size=kid_subset_size)
        if "ssim" in metrics:
            self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
            self.suffix["ssim"] = ""
        if "lpips" in metrics:
            self.lpips, self.lpips_net = self._lpips(lpips)

    def _lpips(self, lpips):
        if isinstance(lpips, nn.Module):
            self.suffix["lpips"] = "_" + getattr(lpips, "name", "custom")
            return MeanMetric(), lpips
        if lpips != "alex":
            raise ValueError(f"quality.lpips={lpips!r}: use 'alex' or an nn.Module")
        require_lpips_alexnet()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.suffix["lpips"] = ""
        return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True), None

    def _to_unit(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] in value_range -> float in [0, 1] at ``size``."""
        low, high = self.value_range
        images = (images.float() - low) / (high - low)
        if self.size is not None and tuple(images.shape[-2:]) != self.size:
            images = F.interpolate(images, size=self.size, mode="bicubic", align_corners=False, antialias=True)
        return images.clamp(0, 1)

    def _repainted(self, generated: Tensor, original: Tensor | None, inpaint_mask: Tensor | None) -> Tensor:
        if not self.repaint:
            return generated
        if original is None or inpaint_mask is None:
            raise ValueError("QualityEvaluator(repaint=True) needs the original image and the inpaint_mask")
        return repaint(generated, original, inpaint_mask)

    def update_real(self, images: Tensor) -> None:
        """Real images of the FID/KID reference set (VITON-HD: test/image)."""
        images = self._to_unit(images)
        for name in ("fid", "kid"):
            if name in self.metric_names:
                getattr(self, name).update(images, real=True)

    def update_generated(self, generated: Tensor, original: Tensor | None = None,
                         inpaint_mask: Tensor | None = None) -> None:
        """Outputs of the unpaired run, for FID/KID; ``original`` and ``inpaint_mask`` are read when repainting."""
        images = self._to_unit(self._repainted(generated, original, inpaint_mask))
        for name in ("fid", "kid"):
            if name in self.metric_names:
                getattr(self, name).update(images, real=False)

    def update_paired(self, generated: Tensor, target: Tensor, inpaint_mask: Tensor | None = None) -> None:
        """Outputs of the paired run and their ground truth, for SSIM/LPIPS (repainting uses the target)."""
        generated = self._to_unit(self._repainted(generated, target, inpaint_mask))
        target = self._to_unit(target)
        if "ssim" in self.metric_names:
            self.ssim.update(generated, target)
        if "lpips" in self.metric_names:
            if self.lpips_net is None:
                self.lpips.update(generated, target)
            else:
                self.lpips.update(self.lpips_net(generated * 2 - 1, target * 2 - 1).flatten())

    def compute(self) -> dict[str, float]:
        out = {}
        if "fid" in self.metric_names:
            out["fid" + self.suffix["fid"]] = float(self.fid.compute())
        if "kid" in self.metric_names:
            try:
                kid_mean, kid_std = self.kid.compute()
            except ValueError as error:
                raise ValueError(f"KID: {error}. Each image set needs at least kid_subset_size="
                                 f"{self.kid.subset_size} images; lower quality.kid_subset_size for small runs.") \
                    from error
            out["kid" + self.suffix["kid"]] = float(kid_mean)
            out["kid_std" + self.suffix["kid"]] = float(kid_std)
        if "ssim" in self.metric_names:
            out["ssim"] = float(self.ssim.compute())
        if "lpips" in self.metric_names:
            out["lpips" + self.suffix["lpips"]] = float(self.lpips.compute())
        return out

    def reset(self) -> None:
        for name in self.metric_names:
            getattr(self, name).reset()
