"""JoyImage-Edit: the reference's and the generated latents are items of one 6-D latent [B, items, C, frames, H, W]
(reference first, generated last; the transformer moves the generated item to the front of its sequence, the text
after the images), 2x2 patches inside the transformer, per-channel latent statistics. Its call snaps the asked size
to a bucket of a 1024x1024 area and samples the reference's VAE latent from the global random generator;
``scope_call`` keeps ``image_size`` and takes the latent's mode instead, for one call."""
from __future__ import annotations

import torch

from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter, pil_image


def posterior_mode(output):
    """A VAE encoding whose ``latent_dist.sample()`` gives the posterior's mode: deterministic, as the re-running
    checks need (FLUX.1 Kontext and LongCat-Image-Edit encode their references the same way)."""
    posterior = output.latent_dist
    posterior.sample = lambda generator=None: posterior.mode()
    return output


class JoyImageEditAdapter(DiffusersTransformerAdapter):
    pipeline_class = "JoyImageEditPipeline"
    text_encoders = ("text_encoder", "tokenizer", "processor")
    guidance_is_cfg = True

    def text_widths(self) -> tuple[int, None]:
        return self.transformer.config.text_dim, None

    def pipeline_inputs(self, inputs) -> dict:
        """8-bit PIL references, the fixed embedding with the all-ones mask its call requires (its transformer does
        not read a mask), CFG off."""
        embeds = inputs.extra["prompt_embeds"]
        return dict(image=[pil_image(r) for r in self.references(inputs)], prompt_embeds=embeds,
                    prompt_embeds_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
                    guidance_scale=1.0)

    def patch_size(self) -> int:
        return self.transformer.config.patch_size[-1]

    @property
    def token_factor(self) -> int:
        return self.pipe.vae_scale_factor_spatial * self.patch_size()

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        patch = self.patch_size()
        return self.transformer.config.in_channels, patch * h, patch * w

    def reference_grid(self):
        """The reference is resized to cover the generated size (``image_size``) and centre-cropped to it."""
        return "row" if self.relation == "text" else self.token_grid(self.image_size)

    def transformer_timestep(self, t: float) -> float:
        return float(t)   # its loop passes the scheduler timestep itself

    def scope_call(self, hooks) -> None:
        """During the call: its image processor's ``get_default_height_width`` (the 1024x1024-area bucket nearest
        in aspect ratio) gives the asked ``image_size``, and its VAE's reference encoding samples the mode."""
        hooks.replace(self.pipe.vae_image_processor, "get_default_height_width",
                      lambda image, height=None, width=None: (height, width))
        encode = hooks.replace(self.pipe.vae, "encode", lambda x: posterior_mode(encode(x)))

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, None, :, None]   # the generated item, one frame: [B, 1, C, 1, H, W]

    def _generated(self, output: torch.Tensor) -> torch.Tensor:
        return output   # every item; _unpack picks the generated one

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """The generated item's frame of a 6-D latent [B, items, C, 1, H, W] (the loop's and the transformer's);
        the call's ``output_type="latent"`` result is that frame already, [B, C, H, W]."""
        return latents[:, -1, :, 0] if latents.dim() == 6 else latents

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Per-channel statistics, one video frame."""
        frames = self.pipe.denormalize_latents(latents[:, :, None]).to(self.vae.dtype)
        return self.vae.decode(frames, return_dict=False)[0][:, :, 0].clamp(-1, 1)
