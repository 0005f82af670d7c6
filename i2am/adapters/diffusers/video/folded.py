"""``FoldedFramesAdapter``: the ``model=diffusers`` image-to-video pipelines whose UNet folds the frames into the
batch (I2VGen-XL, Stable Video Diffusion). A CFG step is one UNet call on [negative, positive] chunks whose rows are
(chunk, sample, frame). The capture is ``AttributionCapture`` on ``i2am.trace``'s layers of one relation with the
frames unfolded (``frames_in_batch``), so the maps are video maps (docs/video_maps.md); the token knockout is
``TokenKnockout`` with each sample's keep mask repeated over its frames. The conditional chunk is the positive one
whenever the pipeline's call guides (``do_classifier_free_guidance``)."""
from __future__ import annotations

from i2am.adapters._anatomy import denoiser_stages
from i2am.adapters.diffusers.video.base import VideoCapture, VideoPipelineAdapter
from i2am.engine.cfg_rows import CONDITIONAL_CHUNK, chunk_rows
from i2am.engine.knockout import TokenKnockout
from i2am.engine.pipelines import layer_specs


class FoldedFramesAdapter(VideoPipelineAdapter):
    """An image-to-video UNet pipeline folding the frames into the batch (module docstring)."""

    default_guidance: float   # the call's own guidance when ``guidance`` is None

    def __init__(self, pipe, size, guidance, image_size, num_frames, num_steps, relation):
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation)
        self.unet, self.vae, self.image_encoder = pipe.unet, pipe.vae, pipe.image_encoder
        self.specs = [s for s in layer_specs(pipe) if s.relation == self.relation]

    @property
    def step_module(self):
        return self.unet

    def frames_in_batch(self) -> int:
        """Frames per sample in a UNet call's rows (chunk, sample, frame)."""
        return self.num_frames

    def cfg_layout_for(self, guidance) -> str:
        return "uncond_cond" if (self.default_guidance if guidance is None else float(guidance)) > 1 else "none"

    def conditional_slice(self, batch: int, layout: str) -> slice:
        """The positive chunk of the UNet call in progress (the pipeline's guidance decides its chunk count)."""
        chunks = 2 if self.pipe.do_classifier_free_guidance else 1
        return chunk_rows(batch, chunks, CONDITIONAL_CHUNK[chunks])

    def latent_grid(self) -> tuple[int, int, int]:
        """(frames, h, w) of the generated video's latents: one latent frame per frame."""
        scale = int(self.pipe.vae_scale_factor)
        return self.num_frames, self.image_size[0] // scale, self.image_size[1] // scale

    def expected_query_grids(self, latent_hw=None) -> dict:
        frames, h, w = self.latent_grid()
        return {s.name: (frames, h // 2 ** level, w // 2 ** level) for s in self.specs
                for level in [self._level(s.name)]}

    def _level(self, name: str) -> int:
        """How often the latent grid is halved before the layer of ``<relation>/<down|mid|up>_blocks.<i>...``."""
        block, _, rest = name.split("/", 1)[1].partition(".")
        deepest = len(self.unet.down_blocks) - 1
        if block == "mid_block":
            return deepest
        index = int(rest.split(".", 1)[0])
        return index if block == "down_blocks" else deepest - index

    def video_meta(self) -> dict:
        return {"temporal_ratio": 1, "spatial_ratio": int(self.pipe.vae_scale_factor)}

    def attribution_capture(self, cfg) -> VideoCapture:
        return VideoCapture(self, cfg, frames_in_batch=self.frames_in_batch)

    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None) -> TokenKnockout:
        self._knockout_relation(mode)
        return TokenKnockout(self, layers=layers, frames_in_batch=self.frames_in_batch)

    def randomization_stages(self) -> list[tuple[str, list]]:
        """From the output side: the UNet's stages (``denoiser_stages``), its other parts (e.g. the embedders of
        the conditioning), then the CLIP image encoder."""
        stages = denoiser_stages(self.unet)
        covered = {id(m) for _, mods in stages for mod in mods for m in mod.modules()}
        rest = [m for _, m in self.unet.named_children() if id(m) not in covered and any(True for _ in m.parameters())]
        stages += [("unet.conditioning", rest), ("image_encoder", [self.image_encoder])]
        return [(name, mods) for name, mods in stages if mods]
