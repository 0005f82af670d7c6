"""One reusable buffer for the logits blocks a capture forms at every layer call.

A fresh [B, heads, queries, keys] fp32 block of tens of MiB is, on a CPU, a fresh memory mapping whose pages the
kernel faults in and zeroes on first write: on SD-1.5's largest cross-attention layer that cost more than the matmul
filling it. A capture instead writes each block into one buffer that it holds while it is entered (as large as its
largest block; CUDA's caching allocator would keep that memory reserved anyway) and drops on exit. A block taken
from it is valid until the next ``block`` or ``matmul``: callers reduce it before they form another.
"""
from __future__ import annotations

import math

import torch


class Workspace:
    def __init__(self):
        self._buffer: torch.Tensor | None = None

    def block(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` in the buffer (grown when too small)."""
        size = math.prod(shape)
        buffer = self._buffer
        if buffer is None or buffer.numel() < size or buffer.device != device or buffer.dtype != dtype:
            buffer = self._buffer = torch.empty(size, dtype=dtype, device=device)
        return buffer[:size].view(shape)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``torch.matmul(a, b)`` written into the buffer."""
        shape = (*torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
        return torch.matmul(a, b, out=self.block(shape, torch.result_type(a, b), a.device))

    def release(self) -> None:
        self._buffer = None

    @property
    def nbytes(self) -> int:
        return 0 if self._buffer is None else self._buffer.numel() * self._buffer.element_size()

