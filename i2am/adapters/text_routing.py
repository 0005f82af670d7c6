"""A constructed joint-attention transformer whose reference reaches the generated image only through the text tokens:
the known answer for the indirect routes of ``i2am.engine.routes``.

The network is a tiny diffusers ``FluxTransformer2DModel`` (2 double-stream + 1 single-stream blocks, 2 heads x 16,
random weights under a seed), packed like FLUX.1 Kontext: [text (4 tokens), generated (6x6), reference (6x6)].
Two structural masks (``JointTokenKnockout`` with ``rows``, active while :class:`TextRouting` is) force the route:

- generated queries never see reference keys (the direct route is cut in every block);
- text queries see, among the reference keys, only the ``planted`` cells (a 2x2 patch per sample), so the text
  tokens copy the planted reference content and carry it to the generated tokens.

Hence the two-hop map must point at the planted cells and the direct map (the ``share`` normalisation's) is zero.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Self

import torch
from diffusers import FluxTransformer2DModel

from i2am.engine.joint_knockout import JointTokenKnockout

TEXT_TOKENS = 4
GRID = (6, 6)
CHANNELS = 8
CONFIG = {"patch_size": 1, "in_channels": CHANNELS, "out_channels": CHANNELS, "num_layers": 2,
          "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": CHANNELS,
          "pooled_projection_dim": CHANNELS, "guidance_embeds": False, "axes_dims_rope": [4, 6, 6]}


def build_text_routing(seed: int = 0) -> FluxTransformer2DModel:
    """The tiny transformer of ``CONFIG`` with diffusers' initialisation under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FluxTransformer2DModel(**CONFIG).eval()


def token_ids() -> torch.Tensor:
    """img_ids as FluxKontextPipeline builds them: (0, row, col) generated, then (1, row, col) reference."""
    rows, cols = torch.meshgrid(torch.arange(GRID[0]), torch.arange(GRID[1]), indexing="ij")
    gen = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).float()
    ref = gen.clone()
    ref[:, 0] = 1
    return torch.cat([gen, ref])


def planted_patches(count: int, seed: int = 0) -> torch.Tensor:
    """[count, rows*cols] bool: one random 2x2 patch of reference cells per sample."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, GRID[0] - 1, (count,), generator=generator)
    cols = torch.randint(0, GRID[1] - 1, (count,), generator=generator)
    planted = torch.zeros(count, *GRID, dtype=torch.bool)
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        planted[i, r:r + 2, c:c + 2] = True
    return planted.flatten(1)


def routing_inputs(count: int, seed: int = 0) -> dict:
    """Forward arguments of ``count`` samples: random generated, reference and text tokens, one timestep."""
    generator = torch.Generator().manual_seed(seed)
    cells = GRID[0] * GRID[1]
    return dict(hidden_states=torch.randn(count, 2 * cells, CHANNELS, generator=generator),
                encoder_hidden_states=torch.randn(count, TEXT_TOKENS, CHANNELS, generator=generator),
                pooled_projections=torch.randn(count, CHANNELS, generator=generator),
                timestep=torch.full((count,), 0.5), img_ids=token_ids(), txt_ids=torch.zeros(TEXT_TOKENS, 3),
                return_dict=False)


def generated_output(model: FluxTransformer2DModel, inputs: dict) -> torch.Tensor:
    """[B, Lg, CHANNELS] the transformer's output on the generated tokens."""
    return model(**inputs)[0][:, :GRID[0] * GRID[1]]


class TextRouting:
    """Context manager imposing the structural masks of the module docstring for ``planted`` [B, rows*cols] bool."""

    def __init__(self, model: FluxTransformer2DModel, planted: torch.Tensor):
        self.model, self.planted = model, planted.bool()
        self._stack: ExitStack | None = None

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            no_direct = stack.enter_context(JointTokenKnockout(self.model, rows=("generated",)))
            no_direct.set_keep(lambda grid: torch.zeros_like(self.planted))
            only_planted = stack.enter_context(JointTokenKnockout(self.model, rows=("text",)))
            only_planted.set_keep(lambda grid: self.planted)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
