"""Feature networks of the quality metrics, and where their weights must be on an offline machine.

- ``inception_features``: the FID/KID Inception-V3 (torch-fidelity's port of the TF graph, 2048-d pool features)
  from the ``metrics`` extra. Its weights are never downloaded here: put the file in the torch hub cache or pass a path.
- ``require_lpips_alexnet``: checks what torchmetrics' LPIPS (AlexNet) needs before it would try to download.
- ``RandomConvFeatures``: a fixed, seeded random conv net for toy runs. NOT Inception: numbers computed with it are
  reported as ``fid_randconv`` / ``kid_randconv`` and are not comparable with any published FID.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

from i2am.errors import UserError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
EXTRA_HINT = "install the optional extra: pip install 'i2am[metrics]'"


def hub_checkpoint(filename: str) -> Path:
    """Where torch.hub (and so torchvision / torch-fidelity) looks for a cached file: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


class MissingPackageError(UserError, ModuleNotFoundError):
    """A metric needs an optional package that is not installed; the message names the extra and the config keys."""


def _require_package(module: str, pip_name: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(
            f"{what} needs the package '{pip_name}', which is not installed. Either {EXTRA_HINT}, or leave the "
            f"metric out: i2am evaluate ... quality.metrics=[ssim] (evaluators.quality.metrics=[ssim] in an attribute "
            f"run), or for toy runs evaluator@quality=quality_toy (random-conv features, not comparable with "
            f"published numbers).", name=module)


def inception_weights_path(weights_path: str | Path | None = None) -> Path:
    """The Inception weights file: ``weights_path`` if given, else the torch hub cache; a clear error if missing."""
    path = Path(weights_path) if weights_path is not None else hub_checkpoint(INCEPTION_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"FID/KID Inception weights not found at {path}. This machine is offline and nothing is downloaded: "
            f"fetch {INCEPTION_URL} elsewhere and put it at {hub_checkpoint(INCEPTION_FILE)} (torch hub cache, "
            f"set TORCH_HOME to move it), or pass its path as quality.inception_weights=/path/{INCEPTION_FILE}.")
    return path


class InceptionFeatures(nn.Module):
    """2048-d Inception-V3 pool features of [N, 3, H, W] float images in [0, 1] (rounded to uint8 first, as PNGs)."""

    num_features = 2048

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        _require_package("torch_fidelity", "torch-fidelity", "FID/KID with the Inception backbone")
        path = inception_weights_path(weights_path)
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(path))

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images.clamp(0, 1) * 255).round().to(torch.uint8))


def require_lpips_alexnet() -> None:
    """Raise a clear error unless torchmetrics' LPIPS (AlexNet) can be built offline."""
    _require_package("torchvision", "torchvision", "LPIPS with the AlexNet backbone")
    path = hub_checkpoint(ALEXNET_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS AlexNet weights not found at {path}. This machine is offline and nothing is downloaded: fetch "
            f"{ALEXNET_URL} elsewhere and put it there (torch hub cache, set TORCH_HOME to move it). The LPIPS linear "
            "heads ship with torchmetrics.")


class RandomConvFeatures(nn.Module):
    """Fixed random conv features for toy runs and tests: NOT Inception, not FID-comparable.

    Two seeded random 3x3 convolutions with ReLU and a global average pool; input [N, 3, H, W] in [0, 1].
    """

    name = "randconv"

    def __init__(self, num_features: int = 64, hidden: int = 32, seed: int = 0):
        super().__init__()
        self.num_features = num_features
        generator = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, hidden, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden, num_features, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        with torch.no_grad():
            for param in self.net.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / param[0].numel()) ** 0.5)  # He init
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.float())
