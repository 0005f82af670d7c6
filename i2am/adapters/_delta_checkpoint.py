"""Quantised-delta checkpoint files (``*.qdelta``): a checkpoint stored as its difference to a base checkpoint file
next to it, quantised per output channel, for shipping many checkpoints of one run in little space.

The file is an xz (lzma) stream of a safetensors payload. For every tensor ``key`` of the base it holds
``key.codes`` (int8 in [-levels, levels], the tensor's shape) and ``key.scale`` (float32, one per output channel,
i.e. per index of dimension 0; one for a 0- or 1-dim tensor). Its metadata names the base file (relative to the
delta's folder), the base's sha256 and the number of levels. The weights it stands for are

    base (as float32) + codes (as float32) * scale

computed with two separately rounded float32 operations, so a file loads to the same tensors, bit for bit, on every
run and CPU. ``scale`` is the channel's largest absolute difference divided by ``levels``.
"""
from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from i2am.adapters._checkpoint import CheckpointError, read_state_dict

DELTA_SUFFIX = ".qdelta"
FORMAT = "i2am-quantised-delta/1"


def _per_channel(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as [channels, rest]: dimension 0 is the output channel; a 0- or 1-dim tensor is one channel."""
    return tensor.reshape(1, -1) if tensor.dim() <= 1 else tensor.reshape(tensor.shape[0], -1)


def quantise(delta: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes of ``delta``'s shape, float32 scale per output channel) of a float tensor."""
    if not 1 <= levels <= 127:
        raise ValueError(f"levels={levels}: the codes are int8, so levels must lie in 1..127")
    rows = _per_channel(delta.float())
    scale = rows.abs().amax(dim=1) / levels
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(rows / safe[:, None]).clamp(-levels, levels).to(torch.int8)
    return codes.reshape(delta.shape), scale


def dequantise(base: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    rows = _per_channel(codes).float() * scale.float()[:, None]
    return base.float() + rows.reshape(base.shape)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def encode_delta(state: dict[str, torch.Tensor], base_file: Path, levels: int) -> bytes:
    """The ``.qdelta`` bytes of ``state`` (float tensors, the base's keys and shapes) against ``base_file``."""
    base = read_state_dict(base_file)
    if set(state) != set(base):
        raise KeyError(f"the state and the base {base_file} differ in keys: "
                       f"{sorted(set(state) ^ set(base))[:10]}")
    tensors = {}
    for key in sorted(base):
        codes, scale = quantise(state[key].float() - base[key].float(), levels)
        tensors[f"{key}.codes"], tensors[f"{key}.scale"] = codes.contiguous(), scale.contiguous()
    metadata = {"format": FORMAT, "base": Path(base_file).name, "base_sha256": file_sha256(base_file),
                "levels": str(levels)}
    return lzma.compress(save_safetensors(tensors, metadata=metadata), preset=9 | lzma.PRESET_EXTREME)


def delta_metadata(payload: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors payload (its 8-byte header length, then the JSON header)."""
    length = int.from_bytes(payload[:8], "little")
    return json.loads(payload[8:8 + length]).get("__metadata__") or {}


def read_delta(path: Path) -> dict[str, torch.Tensor]:
    """The float32 weights a ``.qdelta`` file stands for (its base must lie next to it, unchanged)."""
    path = Path(path)
    try:
        payload = lzma.decompress(path.read_bytes())
        metadata = delta_metadata(payload)
        tensors = load_safetensors(payload)
    except Exception as err:  # lzma, safetensors or JSON errors: a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable {DELTA_SUFFIX} checkpoint ({type(err).__name__}). "
                              f"Check the file or export it again.") from err
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}. Export it again.")
    base_file = path.parent / metadata["base"]
    if not base_file.is_file() or file_sha256(base_file) != metadata["base_sha256"]:
        raise CheckpointError(
            f"{path} is a delta against {base_file} with sha256 {metadata['base_sha256']}, which is "
            f"{'missing' if not base_file.is_file() else 'a different file now'}. Put that base file next to it, "
            f"or export the delta again against the current one.")
    base = read_state_dict(base_file)
    return {key: dequantise(base[key], tensors[f"{key}.codes"], tensors[f"{key}.scale"]) for key in base}
