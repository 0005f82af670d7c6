"""PSNR / SSIM of super-resolved outputs against known HR images (torchmetrics), per sample.

SR papers (PASD, StableSR, SeeSR) report them on the Y channel of YCbCr (ITU-R BT.601, as BasicSR computes it);
``y_channel=False`` scores RGB instead. Inputs are [B, 3, H, W] in [-1, 1], the batch convention of i2am.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from i2am.data import schema
from i2am.evaluation.evaluator import Evaluator, SampleContext

_BT601_Y = (65.481, 128.553, 24.966)


def rgb_to_y(images01: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> [B, 1, H, W] BT.601 luma in [16/255, 235/255]."""
    weights = images01.new_tensor(_BT601_Y).view(1, 3, 1, 1)
    return ((images01 * weights).sum(1, keepdim=True) + 16.0) / 255.0


def _prepare(images: torch.Tensor, y_channel: bool) -> torch.Tensor:
    images01 = ((images.float() + 1) / 2).clamp(0, 1)
    return rgb_to_y(images01) if y_channel else images01


def psnr_ssim(output: torch.Tensor, hr: torch.Tensor, y_channel: bool = True) -> dict[str, torch.Tensor]:
    """{"psnr": [B] dB, "ssim": [B]} of ``output`` against ``hr`` (both [B, 3, H, W] in [-1, 1])."""
    if output.shape != hr.shape:
        raise ValueError(f"psnr_ssim: output {tuple(output.shape)} and HR {tuple(hr.shape)} differ in shape")
    preds, target = _prepare(output, y_channel), _prepare(hr, y_channel)
    psnr = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(preds, target, data_range=1.0, reduction="none")
    return {"psnr": psnr, "ssim": ssim}


class SRQuality(Metric):
    """Dataset PSNR / SSIM (Y channel by default) of super-resolved outputs: plain means over images."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, y_channel: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.y_channel = y_channel
        self.add_state("psnr_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ssim_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, output: torch.Tensor, hr: torch.Tensor) -> None:
        scores = psnr_ssim(output, hr, self.y_channel)
        self.psnr_sum += scores["psnr"].double().sum().to(self.psnr_sum.device)
        self.ssim_sum += scores["ssim"].double().sum().to(self.ssim_sum.device)
        self.count += output.shape[0]

    def compute(self) -> dict[str, float]:
        return {"psnr": float(self.psnr_sum / self.count), "ssim": float(self.ssim_sum / self.count)}


class SRQualityEvaluator(Evaluator):
    """:class:`SRQuality` on one sample: its generated image against the dataset's HR image."""

    def __init__(self, y_channel: bool = True):
        super().__init__()
        self.metric = SRQuality(y_channel=y_channel)

    def update(self, ctx: SampleContext) -> None:
        self.metric.update(ctx.generated, ctx.sample[schema.IMAGE].float().cpu())

    def compute(self) -> dict[str, float]:
        return self.metric.compute()
