"""Which rows of a batched denoiser call are the conditional ones: the one answer, from the CFG layout.

A CFG-batched call stacks ``chunks`` equal chunks of the latent batch; one of them is the conditional one. The
two-chunk layouts are named: "none" (no CFG, every row), "uncond_cond" (diffusers, PBE, PASD, SD3: the second
chunk) and "cond_uncond" (the custom model: the first chunk). InstructPix2Pix stacks three chunks and names its
conditional chunk by index (``chunk_rows``).
"""
from __future__ import annotations

import torch

CFG_ORDERS = ("uncond_cond", "cond_uncond")
# layout -> (chunks, index of the conditional chunk)
LAYOUT_CHUNKS = {"none": (1, 0), "uncond_cond": (2, 1), "cond_uncond": (2, 0)}
# chunks -> the conditional chunk of a diffusers-style call: one chunk, [negative, positive], InstructPix2Pix's
# [text + image, image only, unconditional]
CONDITIONAL_CHUNK = {1: 0, 2: 1, 3: 0}


def uses_cfg(guidance) -> bool:
    """Classifier-free guidance is on (a CFG-batched call) for any guidance other than None and 1."""
    return guidance is not None and float(guidance) != 1.0


def layout_for(cfg_order: str, guidance) -> str:
    """The batch layout of a call at ``guidance``: ``cfg_order`` with CFG, else "none"."""
    return cfg_order if uses_cfg(guidance) else "none"


def chunk_rows(batch: int, chunks: int, index: int) -> slice:
    """Rows of chunk ``index`` of a batch of ``batch`` rows stacked from ``chunks`` equal chunks."""
    if batch % chunks:
        raise RuntimeError(f"a batch of {batch} rows does not split into {chunks} CFG chunks")
    size = batch // chunks
    return slice(index * size, (index + 1) * size)


def conditional_rows(batch: int, layout: str) -> slice:
    """The conditional rows of a batch of ``batch`` rows in the two-chunk ``layout``."""
    if layout not in LAYOUT_CHUNKS:
        raise ValueError(f"cfg_layout={layout!r}; choose from {tuple(LAYOUT_CHUNKS)}")
    chunks, index = LAYOUT_CHUNKS[layout]
    if batch % chunks:
        raise RuntimeError(f"cfg_layout={layout!r} needs an even batch, got {batch}")
    return chunk_rows(batch, chunks, index)


def split_cfg(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) halves of a two-chunk CFG batch in ``layout``."""
    cond = conditional_rows(x.shape[0], layout)
    half = x.shape[0] // 2
    uncond = slice(half, x.shape[0]) if cond.start == 0 else slice(0, half)
    return x[cond], x[uncond]
