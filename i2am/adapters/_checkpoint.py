"""Reading checkpoint files and comparing a converted state dict with a module's own, key by key."""
from __future__ import annotations

import fnmatch
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from i2am.errors import UserError
from i2am.sampling.schedule import NUM_TRAIN_TIMESTEPS, ldm_betas

# What the safe (weights-only) unpickler names when a file pickles more than tensors and containers.
PICKLED_OBJECTS = re.compile(r"Unsupported global: GLOBAL [\w.]+")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file or keys."""


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did, in the checkpoint's own key names where they exist.

    missing: model keys the checkpoint does not provide.
    unexpected: checkpoint keys the model has no place for (and that are not documented as ignorable).
    mismatched: (key, shape in the checkpoint, shape expected by the model).
    ignored: checkpoint keys that are documented as ignorable for this family (schedule buffers, VGG, ...).
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 10) -> str:
        parts = []
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}"
                                                 for k, a, b in self.mismatched])):
            if items:
                shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
                parts.append(f"{len(items)} {title}: {shown}")
        return "; ".join(parts) or "all keys matched"


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``.ckpt``/``.pt``/``.bin``/``.pth`` (torch) or ``.safetensors`` file, or the float32 weights a
    ``.qdelta`` file stands for (``i2am.adapters._delta_checkpoint``: a quantised delta against a base file next to it).

    Lightning files are unwrapped (``ckpt["state_dict"]``). By default only tensors and plain containers load (a
    safe load); a file that also pickles Python objects (e.g. omegaconf hyper-parameters) is refused, because
    unpickling them can execute arbitrary code. ``trusted=True`` (CLI: ``model.trusted=true``) loads it anyway: only
    for files from a source you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}. Check model.checkpoint (or the path you passed).")
    if path.suffix == ".qdelta":
        from i2am.adapters._delta_checkpoint import read_delta  # it reads its base file with this function
        return read_delta(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=not trusted, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        if trusted or not PICKLED_OBJECTS.search(str(err)):
            raise CheckpointError(unreadable(path, err)) from None
        found = PICKLED_OBJECTS.search(str(err)).group(0)
        raise CheckpointError(
            f"{path} was refused: besides tensors it holds pickled Python objects ({found}), and loading those can "
            f"execute arbitrary code. If you trust the file's source, allow it with model.trusted=true (trusted=True "
            f"in Python); better, convert it to .safetensors, which holds tensors only.") from None
    except Exception as err:  # truncated zip, text file, safetensors header errors, ...
        raise CheckpointError(unreadable(path, err)) from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict (expected a mapping of names to tensors, "
                              f"or a Lightning checkpoint with 'state_dict')")
    return obj


def unreadable(path: Path, err: Exception) -> str:
    """The message of a file that is not a checkpoint (PyTorch's own text is left out: it suggests unsafe loading)."""
    return (f"{path} is not a readable checkpoint (truncated, corrupt or not a model file: {type(err).__name__}). "
            f"Check the file (its size, a fresh copy) or set model.checkpoint to another one.")


def is_ignorable(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def compare(expected: dict[str, torch.Size], incoming: dict[str, torch.Tensor], source_name: dict[str, str],
            ignorable=()) -> LoadReport:
    """Report of loading ``incoming`` (model key names) into a module whose keys/shapes are ``expected``.

    ``source_name`` maps a model key to the checkpoint key it came from, so reports speak the file's language.
    """
    report = LoadReport()
    for key, shape in expected.items():
        if key not in incoming:
            report.missing.append(source_name.get(key, key))
        elif tuple(incoming[key].shape) != tuple(shape):
            report.mismatched.append((source_name.get(key, key), tuple(incoming[key].shape), tuple(shape)))
    return report


def ldm_schedule_buffers(num_steps: int = NUM_TRAIN_TIMESTEPS) -> dict[str, torch.Tensor]:
    """The 12 diffusion-schedule buffers an LDM ``LatentDiffusion`` saves (``linear`` = scaled-linear betas, eps)."""
    betas = ldm_betas(num_steps)
    alphas = 1.0 - betas
    acp = torch.cumprod(alphas, 0)
    acp_prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
    buffers = {
        "betas": betas,
        "alphas_cumprod": acp,
        "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": acp.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - acp).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - acp).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / acp).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / acp - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * acp_prev.sqrt() / (1.0 - acp),
        "posterior_mean_coef2": (1.0 - acp_prev) * alphas.sqrt() / (1.0 - acp),
    }
    return {k: v.float() for k, v in buffers.items()}


SCHEDULE_BUFFER_KEYS = tuple(ldm_schedule_buffers(2))
