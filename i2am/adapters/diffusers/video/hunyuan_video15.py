"""``model=diffusers`` for HunyuanVideo-1.5 image-to-video (``HunyuanVideo15ImageToVideoPipeline``):
``TransformerVideoAdapter``'s mechanisms (the pipeline's own call, the step report, the refusals) on a joint-attention
transformer, captured by ``JointAttentionCapture`` (as the diffusion-transformer editors are) with the frame axis.

What differs from Wan 2.1: the video, the reference's SigLIP tokens ("image:reference"), the prompt's text tokens
("text") and byT5 glyph tokens ("text:glyph", the prompt's quoted text) share one attention sequence
(``i2am.engine.packing``). The call sizes the video itself, from the image and the transformer's ``target_size``
(its closest bucket of about ``target_size``² pixels): ``model.image_size`` must be that bucket, or the adapter
refuses at startup naming the size to set; the reference is resized to it before the call (which then keeps it as
is). Guidance goes through the pipeline's ``guider`` (classifier-free guidance as a second transformer call per step,
the conditional one first): ``guidance`` sets its ``guidance_scale`` for the call (None: the guider's own); the
capture skips the second call (the same timestep), as ``i2am.trace`` does. The call takes no step callback: the
scheduler's ``step`` reports each step. No text encoder is run: ``prompt_embeds`` with ``prompt_embeds_mask``,
``prompt_embeds_2`` with ``prompt_embeds_mask_2`` and their ``negative_*`` twins from ``model.prompt_embeds``, or
zeros of the encoders' padded lengths (text mask all ones; glyph mask all zeros, as for a prompt without quoted
text, so "text:glyph" needs a file).

The faithfulness check removes the reference's SigLIP tokens with ``i2am.engine.joint_knockout`` (relation
"image:reference" only; they sit at the same positions in every sample, right after the video tokens); its proxy mode
predicts x0 in one step of the pipeline's call, from the velocity the guider hands the scheduler (``predict_x0``).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from i2am.adapters.diffusers.dit._base import report_steps_through_scheduler
from i2am.adapters.diffusers.video.base import StepDone
from i2am.adapters.diffusers.video.transformer import TransformerVideoAdapter
from i2am.engine.hooks import Hooks
from i2am.engine.joint import JointAttentionCapture, find_blocks
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.layers import LayerSpec

PROMPT_KEYS = ("prompt_embeds", "prompt_embeds_mask", "prompt_embeds_2", "prompt_embeds_mask_2")


class JointVideoCapture(JointAttentionCapture):
    """``JointAttentionCapture`` whose maps carry the video's compression ratios (``maps.meta["video"]``)."""

    def __init__(self, transformer, cfg, *, video: dict, **options):
        super().__init__(transformer, cfg, **options)
        self._video = dict(video)

    def maps(self):
        maps = super().maps()
        maps.meta["video"] = dict(self._video)
        return maps


class HunyuanVideo15Adapter(TransformerVideoAdapter):
    """``HunyuanVideo15ImageToVideoPipeline`` (module docstring)."""

    pipeline_class = "HunyuanVideo15ImageToVideoPipeline"
    blocks_attr = "transformer_blocks"
    relations = ("image:reference", "text", "text:glyph")

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(480, 848),
                 num_frames: int = 121, num_steps: int = 50, relation: str | None = None,
                 prompt_embeds: str | None = None):
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation, prompt_embeds)
        generated = tuple(int(s) for s in pipe.video_processor.calculate_default_height_width(
            height=self.image_size[0], width=self.image_size[1], target_size=pipe.target_size))
        if generated != tuple(self.image_size):
            raise ValueError(f"model.image_size={list(self.image_size)}: {self.pipeline_class} generates the bucket "
                             f"of about {pipe.target_size}² pixels closest to the image's aspect, "
                             f"{list(generated)} for this one; set model.image_size={list(generated)}")
        if self.relation == "text:glyph" and not bool(self.prompt_embeds_mask_2.any()):
            raise ValueError("model.relation=text:glyph: the glyph mask has no valid token; pass model.prompt_embeds="
                             "<file with prompt_embeds_2 and prompt_embeds_mask_2 of a prompt with quoted text>")

    # ---- what the pipeline's class says ----------------------------------------------------------------------
    def layer_specs(self) -> list[LayerSpec]:
        """One layer per joint-attention block and relation, named ``<relation>/<block>`` as the capture's maps."""
        grid = self.latent_grid()
        vision = self.pipe.image_encoder.config
        siglip = (vision.image_size // vision.patch_size,) * 2
        return [LayerSpec(name=f"{relation}/{b.name}", module=b.module, group=b.group, query_grid=grid,
                          ref_grid=siglip if relation == "image:reference" else "row", relation=relation)
                for relation in self.relations for b in find_blocks(self.transformer)]

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.num_channels_latents)

    @property
    def patch(self) -> tuple[int, int, int]:
        config = self.transformer.config
        return int(config.patch_size_t), int(config.patch_size), int(config.patch_size)

    def _set_prompt_embeds(self, prompt_embeds: str | None) -> None:
        """Buffers ``prompt_embeds``, ``prompt_embeds_mask``, ``prompt_embeds_2``, ``prompt_embeds_mask_2`` and their
        ``negative_`` twins (module docstring)."""
        config = self.transformer.config
        defaults = {"prompt_embeds": torch.zeros(1, self.pipe.tokenizer_max_length, config.text_embed_dim),
                    "prompt_embeds_2": torch.zeros(1, self.pipe.tokenizer_2_max_length, config.text_embed_2_dim)}
        state = {}
        if prompt_embeds is not None:
            from safetensors.torch import load_file

            state = load_file(str(prompt_embeds))
            missing = [k for k in PROMPT_KEYS if k not in state]
            if missing:
                raise KeyError(f"model.prompt_embeds={prompt_embeds}: no {missing} (keys {sorted(state)}); "
                               f"{self.pipeline_class} reads {list(PROMPT_KEYS)} (+ their negative_ twins)")
        for key in ("prompt_embeds", "prompt_embeds_2"):
            embeds = state.get(key, defaults[key])
            embeds = embeds.reshape(1, *embeds.shape[-2:]).float()
            width = defaults[key].shape[-1]
            if embeds.shape[-1] != width:
                raise ValueError(f"model.prompt_embeds={prompt_embeds}: {key} of width {embeds.shape[-1]}, the "
                                 f"transformer reads {width}")
            mask_key = key.replace("prompt_embeds", "prompt_embeds_mask")
            mask = state.get(mask_key, torch.full(embeds.shape[:2], int(key == "prompt_embeds")))
            mask = mask.reshape(1, -1).long()
            if mask.shape[1] != embeds.shape[1]:
                raise ValueError(f"model.prompt_embeds={prompt_embeds}: {mask_key} has {mask.shape[1]} entries for "
                                 f"{embeds.shape[1]} tokens")
            negative = state.get(f"negative_{key}", torch.zeros_like(embeds)).reshape(1, -1, width).float()
            negative_mask = state.get(f"negative_{mask_key}", mask).reshape(1, -1).long()
            if negative.shape != embeds.shape or negative_mask.shape != mask.shape:
                raise ValueError(f"model.prompt_embeds={prompt_embeds}: negative_{key} {tuple(negative.shape)} / "
                                 f"negative_{mask_key} {tuple(negative_mask.shape)} differ in shape from {key} "
                                 f"{tuple(embeds.shape)}")
            for name, value in ((key, embeds), (mask_key, mask), (f"negative_{key}", negative),
                                (f"negative_{mask_key}", negative_mask)):
                self.register_buffer(name, value, persistent=False)

    def prompt_kwargs(self, n: int) -> dict:
        names = [*PROMPT_KEYS, *(f"negative_{k}" for k in PROMPT_KEYS)]
        return {name: getattr(self, name).expand(n, *getattr(self, name).shape[1:]) for name in names}

    def size_kwargs(self) -> dict:
        return {}   # the call sizes the video from the image (resized to image_size by call_image)

    def call_image(self, image, n: int):
        height, width = self.image_size
        return image if image.size == (width, height) else image.resize((width, height))

    def guidance_kwargs(self, guidance: float) -> dict:
        return {}   # the guider's guidance_scale is set for the call (run_loop)

    # ---- what the attribution engine reads -------------------------------------------------------------------
    def attribution_capture(self, cfg) -> JointVideoCapture:
        """The joint-attention capture of this adapter's relation; layer names may be given as in the maps
        (``<relation>/<block>``) or as block names."""
        layers = cfg.layers
        if not isinstance(layers, str):
            layers = [n.split("/", 1)[-1] for n in layers]
        elif "/" in layers:
            layers = [layers.split("/", 1)[-1]]
        cfg = replace(cfg, layers="all" if layers == "all+mid" else layers)
        return JointVideoCapture(self.transformer, cfg, video=self.video_meta(), normalisations=("i2am",),
                                 relations=(self.relation,), model_name=self.pipeline_class)

    def knockout(self, layers=None) -> JointTokenKnockout:
        return JointTokenKnockout(self.transformer, relation="image:reference", layers=layers)

    def conditioning_stages(self) -> list[tuple[str, list]]:
        """Its SigLIP image encoder."""
        return [("image_encoder", [self.image_encoder])]

    # ---- the pipeline's call ---------------------------------------------------------------------------------
    @torch.no_grad()
    def run_loop(self, inputs, sampler, callback=None) -> torch.Tensor:
        """``TransformerVideoAdapter.run_loop`` with the guider's ``guidance_scale`` set to the run's guidance."""
        with Hooks("guidance") as hooks:
            self._set_guidance(hooks, sampler.settings(self)["guidance"])
            return super().run_loop(inputs, sampler, callback=callback)

    def _set_guidance(self, hooks: Hooks, guidance) -> None:
        """The guider's ``guidance_scale`` for the call (None: the guider's own; a per-step list is refused by
        ``_check_settings``)."""
        if guidance is not None and not isinstance(guidance, (list, tuple)):
            hooks.replace(self.pipe.guider, "guidance_scale", float(guidance))

    def _watch_calls(self, hooks: Hooks) -> None:
        """The latents the step starts from: the first channels of every transformer call's input (the conditional
        and the unconditional call of a step get the same)."""
        def before_call(module, args, kwargs):
            self._x = kwargs["hidden_states"][:, :self.latent_channels]

        hooks.hook(self.transformer, before_call, pre=True, with_kwargs=True)

    def step_end_argument(self, hooks: Hooks, on_step_end) -> dict:
        """Its call takes no step callback: the scheduler's ``step`` reports each step instead."""
        return report_steps_through_scheduler(hooks, self.pipe, on_step_end)

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t: float, inputs, guidance=None, alpha_cumprod=None) -> torch.Tensor:
        """The flow-matching x0 prediction ``x - sigma * v(x, sigma)`` at a point of a trajectory (``x`` the latents
        [B, C, F, h, w], ``t`` the scheduler timestep, sigma = t / num_train_timesteps): the pipeline call is started
        with ``latents=x``, its transformer calls are given the timestep ``t``, and the velocity is what the
        scheduler's first ``step`` receives (the guider's combination of the step's calls), where the call is
        stopped. The faithfulness check's proxy mode."""
        sigma = float(t) / float(self.pipe.scheduler.config.num_train_timesteps)
        velocity = []

        def at_point(module, args, kwargs):
            kwargs["timestep"] = torch.full_like(kwargs["timestep"], float(t))
            return args, kwargs

        def stop(model_output, timestep, sample, **kwargs):
            velocity.append(model_output)
            raise StepDone

        try:
            with Hooks("predict_x0") as hooks:
                self._set_guidance(hooks, guidance)
                hooks.hook(self.transformer, at_point, pre=True, with_kwargs=True)
                hooks.replace(self.pipe.scheduler, "step", stop)
                self.pipe(**self._call_kwargs(inputs, {"guidance": guidance}), latents=x.to(self.dtype),
                          num_inference_steps=1, output_type="latent", return_dict=False)
        except StepDone:
            pass
        return x - sigma * velocity[0].to(x.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, F, h, w] -> the video [B, 3, T, H, W] in [-1, 1], as the pipeline decodes them: one row
        at a time (the VAE's mid-block attention broadcasts its causal mask wrongly for more than one row)."""
        vae = self.vae
        rows = latents.to(vae.dtype) / vae.config.scaling_factor
        return torch.cat([vae.decode(row[None], return_dict=False)[0] for row in rows]).clamp(-1, 1)
