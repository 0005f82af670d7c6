"""Where each token segment sits in a diffusion transformer's joint attention sequence, read from its own packing.

A joint-attention call sees one sequence of tokens: the text stream, the generated image and, for editors, the
reference images whose latents the pipeline concatenates after the generated latents. The layout is read from the
transformer's forward arguments, never guessed from sizes:

  FluxTransformer2DModel, Flux2Transformer2DModel, LongCatImageTransformer2DModel
      sequence [text, image stream]; the image stream is split into runs of equal first position-id coordinate
      (``img_ids[..., 0]``: 0 for the generated latents, 1 for FLUX.1 Kontext's reference, 10, 20, ... for FLUX.2's
      references; LongCat-Image-Edit: 1 generated, 2 reference); each run's grid is its number of distinct row and
      column ids.
  QwenImageTransformer2DModel
      sequence [text, image stream]; ``img_shapes[0]`` lists (frames, rows, cols) of the generated image, then of
      each reference image.
  JoyImageEditTransformer3DModel
      sequence [image items, text]; a 6-D ``hidden_states`` [B, items, C, T, H, W] holds the references, then the
      generated image, which the transformer moves first; each item is its (T, H, W) grid over ``patch_size``.
  SD3Transformer2DModel
      sequence [image, text] (``JointAttnProcessor2_0`` appends the context); the grid is the latent size over the
      patch size.
  HunyuanVideo15Transformer3DModel
      sequence [video, context]: the video's (frames, h, w) grid over the patch sizes, then per sample the valid
      tokens of the image (SigLIP), glyph (byT5) and text streams in that order, then their padding in the same order
      (the forward's repacking, from the three masks ``encoder_attention_mask``, ``encoder_attention_mask_2`` and the
      image's, all valid unless ``image_embeds`` are all zero). The glyph and text tokens start at per-sample
      positions: their segments carry each sample's position of every token (``Segment.positions``). A stream with no
      valid token in any sample is ``padding`` (no relation).
The first image run is always the generated image: diffusers' editing pipelines pack ``[latents, image_latents]``.
"""
from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Segment:
    """A run of tokens: ``kind`` is "text", "glyph", "generated", "reference" or "padding" (masked out of every
    sample: no relation); ``index`` numbers references.

    frames: the generated segment of a video: its latent frames, one ``grid`` (h, w) each, frame-major; None for an
        image.
    positions: a segment whose tokens sit at per-sample positions (packed after each sample's valid tokens of other
        streams): per sample, the sequence position of each of its tokens in their input order (``start`` is then
        the least of them and the tokens are not ``start:stop``); None for a contiguous run at ``start:stop``."""

    kind: str
    start: int
    length: int
    grid: tuple[int, int]
    index: int = 0
    frames: int | None = None
    positions: tuple[tuple[int, ...], ...] | None = None

    @property
    def stop(self) -> int:
        return self.start + self.length

    @property
    def relation(self) -> str:
        """The relation name maps use: "text", "text:glyph", "image:reference", "image:reference.1", ..."""
        if self.kind == "reference":
            return "image:reference" + (f".{self.index}" if self.index else "")
        return "text:glyph" if self.kind == "glyph" else self.kind

    def columns(self, device=None) -> torch.Tensor | None:
        """[B, length] sequence positions of a per-sample segment (``positions``), None for a contiguous one."""
        return None if self.positions is None else torch.tensor(self.positions, device=device)


@dataclass(frozen=True)
class JointLayout:
    segments: tuple[Segment, ...]

    @property
    def length(self) -> int:
        return sum(s.length for s in self.segments)

    @property
    def generated(self) -> Segment:
        return next(s for s in self.segments if s.kind == "generated")

    @property
    def keys(self) -> list[Segment]:
        """The segments a generated token attends to as a conditioning (text, then references)."""
        return [s for s in self.segments if s.kind not in ("generated", "padding")]

    @property
    def per_sample(self) -> bool:
        """Whether some segment sits at per-sample positions (``Segment.positions``)."""
        return any(s.positions is not None for s in self.segments)


def _image_runs(ids: torch.Tensor, where: str) -> list[tuple[int, tuple[int, int]]]:
    """(length, grid) of each run of equal first id coordinate."""
    if ids.dim() == 3:
        ids = ids[0]
    first = ids[:, 0]
    change = torch.nonzero(first[1:] != first[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), ids.shape[0]]
    runs = []
    for start, stop in itertools.pairwise(bounds):
        part = ids[start:stop]
        grid = (int(part[:, 1].unique().numel()), int(part[:, 2].unique().numel()))
        if grid[0] * grid[1] != stop - start:
            raise ValueError(f"{where}: image tokens {start}:{stop} (first id {first[start].item()}) do not form a "
                             f"grid (rows {grid[0]} x cols {grid[1]} != {stop - start} tokens)")
        runs.append((stop - start, grid))
    return runs


def _segments(text_len: int, runs, text_first: bool) -> JointLayout:
    segments, offset = [], 0
    if text_first:
        segments.append(Segment("text", 0, text_len, (1, text_len)))
        offset = text_len
    for i, (length, grid) in enumerate(runs):
        kind = "generated" if i == 0 else "reference"
        segments.append(Segment(kind, offset, length, grid, index=max(i - 1, 0)))
        offset += length
    if not text_first:
        segments.append(Segment("text", offset, text_len, (1, text_len)))
    return JointLayout(tuple(segments))


def _flux(module, kw) -> JointLayout:
    ids = kw.get("img_ids")
    if ids is None:
        raise ValueError(f"{type(module).__name__}.forward got no img_ids to read the token layout from")
    runs = _image_runs(ids, f"{type(module).__name__} img_ids")
    if sum(r[0] for r in runs) != kw["hidden_states"].shape[1]:
        raise ValueError(f"{type(module).__name__}: img_ids hold {sum(r[0] for r in runs)} tokens, hidden_states "
                         f"{kw['hidden_states'].shape[1]}")
    return _segments(kw["encoder_hidden_states"].shape[1], runs, text_first=True)


def _qwen(module, kw) -> JointLayout:
    shapes = kw.get("img_shapes")
    if not shapes:
        raise ValueError("QwenImageTransformer2DModel.forward got no img_shapes to read the token layout from")
    shapes = shapes[0] if isinstance(shapes[0], (list, tuple)) and isinstance(shapes[0][0], (list, tuple)) else shapes
    runs = [(int(f * h * w), (int(f * h), int(w))) for f, h, w in shapes]
    if sum(r[0] for r in runs) != kw["hidden_states"].shape[1]:
        raise ValueError(f"QwenImageTransformer2DModel: img_shapes {shapes} hold {sum(r[0] for r in runs)} tokens, "
                         f"hidden_states {kw['hidden_states'].shape[1]}")
    return _segments(kw["encoder_hidden_states"].shape[1], runs, text_first=True)


def _sd3(module, kw) -> JointLayout:
    h, w = kw["hidden_states"].shape[-2:]
    p = module.config.patch_size
    grid = (h // p, w // p)
    return _segments(kw["encoder_hidden_states"].shape[1], [(grid[0] * grid[1], grid)], text_first=False)


def _joyimage(module, kw) -> JointLayout:
    x = kw["hidden_states"]
    pt, ph, pw = module.config.patch_size
    frames, rows, cols = x.shape[-3] // pt, x.shape[-2] // ph, x.shape[-1] // pw
    items = x.shape[1] if x.dim() == 6 else 1
    runs = [(frames * rows * cols, (frames * rows, cols))] * items
    return _segments(kw["encoder_hidden_states"].shape[1], runs, text_first=False)


def _packed_positions(masks: list[torch.Tensor], offset: int) -> list[torch.Tensor]:
    """Per stream, [B, T] the position of each token after the forward's repacking of the streams (each [B, T] bool):
    every stream's valid tokens in stream order, then every stream's invalid ones in stream order, from ``offset``."""
    valid_before = offset + torch.zeros(masks[0].shape[0], 1, dtype=torch.long)
    invalid_before = valid_before + sum(m.sum(1, keepdim=True) for m in masks)
    positions = []
    for mask in masks:
        ranks = torch.where(mask, mask.cumsum(1) - 1, (~mask).cumsum(1) - 1)
        positions.append(torch.where(mask, valid_before, invalid_before) + ranks)
        valid_before = valid_before + mask.sum(1, keepdim=True)
        invalid_before = invalid_before + (~mask).sum(1, keepdim=True)
    return positions


def _token_grid(count: int) -> tuple[int, int]:
    """SigLIP's last hidden state is its square patch grid in row-major order (no class token)."""
    side = math.isqrt(count)
    return (side, side) if side * side == count else (1, count)


def _hunyuan_video15(module, kw) -> JointLayout:
    name = type(module).__name__
    missing = [k for k in ("encoder_attention_mask", "encoder_attention_mask_2", "image_embeds") if kw.get(k) is None]
    if missing:
        raise ValueError(f"{name}.forward got no {missing} to read the token layout from")
    x = kw["hidden_states"]
    p, pt = module.config.patch_size, module.config.patch_size_t
    frames, rows, cols = x.shape[-3] // pt, x.shape[-2] // p, x.shape[-1] // p
    video = frames * rows * cols
    image = kw["image_embeds"]
    image_valid = not bool(torch.all(image == 0))   # the forward's own text-to-video test: all-zero image tokens
    masks = [torch.full(image.shape[:2], image_valid), kw["encoder_attention_mask_2"].bool().cpu(),
             kw["encoder_attention_mask"].bool().cpu()]
    positions = _packed_positions(masks, video)

    def per_sample(kind: str, mask: torch.Tensor, where: torch.Tensor) -> Segment:
        return Segment(kind if bool(mask.any()) else "padding", int(where.min()), mask.shape[1], (1, mask.shape[1]),
                       positions=tuple(map(tuple, where.tolist())))

    segments = [Segment("generated", 0, video, (rows, cols), frames=frames)]
    if image_valid:   # every image token is valid: they lead every sample's context, at the same positions
        segments.append(Segment("reference", video, image.shape[1], _token_grid(image.shape[1])))
    else:             # text-to-video: the forward masks every image token out
        segments.append(per_sample("padding", masks[0], positions[0]))
    segments += [per_sample("glyph", masks[1], positions[1]), per_sample("text", masks[2], positions[2])]
    return JointLayout(tuple(segments))


READERS = {"FluxTransformer2DModel": _flux, "Flux2Transformer2DModel": _flux, "QwenImageTransformer2DModel": _qwen,
           "SD3Transformer2DModel": _sd3, "LongCatImageTransformer2DModel": _flux,
           "JoyImageEditTransformer3DModel": _joyimage, "HunyuanVideo15Transformer3DModel": _hunyuan_video15}


def forward_arguments(module: nn.Module, args, kwargs) -> dict:
    bound = inspect.signature(module.forward).bind_partial(*args, **kwargs)
    return dict(bound.arguments)


def read_layout(module: nn.Module, arguments: dict) -> JointLayout:
    name = type(module).__name__
    if name not in READERS:
        raise ValueError(f"{name} is not a supported diffusion transformer; supported: {sorted(READERS)} "
                         f"(i2am.engine.packing)")
    return READERS[name](module, arguments)
