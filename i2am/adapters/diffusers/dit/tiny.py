"""Diffusion-transformer pipelines built from config, without text encoders (nothing downloaded): the
``diffusers-dit-tiny`` preset and the architecture of ``model=diffusers-dit`` on the meta device. The editors
(FLUX.1 Kontext and its inpainting variant, FLUX.2, Qwen-Image-Edit and its several-reference Plus variant,
LongCat-Image-Edit, JoyImage-Edit) take reference images; ``StableDiffusion3Pipeline`` is text-to-image (image <-> text
only)."""
from __future__ import annotations

import torch

PIPELINES = ("FluxKontextPipeline", "FluxKontextInpaintPipeline", "Flux2Pipeline", "QwenImageEditPipeline",
             "QwenImageEditPlusPipeline", "StableDiffusion3Pipeline")
# built here for the adapters, but not offered by i2am.toy: their own call runs on prompt embeddings at a chosen size
# only inside the adapter's swaps (LongCatImageEditAdapter / JoyImageEditAdapter.scope_call)
ADAPTER_CALL_ONLY = ("LongCatImageEditPipeline", "JoyImageEditPipeline")


class NoTextProcessor:
    """Stands in for LongCat-Image-Edit's Qwen2-VL processor: its constructor keeps the processor's
    ``image_processor``, which only its text encoder's input would use."""

    image_processor = None


FLUX1_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                 down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                 layers_per_block=2, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                 use_post_quant_conv=False)
SD3_VAE = {**FLUX1_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609}
# stable-diffusion-3-medium's transformer (SD3Transformer2DModel's defaults are a smaller 18-block layout)
SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
SD3_SHIFT = 3.0   # its FlowMatchEulerDiscreteScheduler's timestep shift


def build_transformer_pipeline(pipeline: str = "FluxKontextPipeline", size: str = "tiny", device="cpu",
                               seed: int = 0):
    """``pipeline`` from config without text encoders: "tiny" (random transformer of 1 double- and 1 single-stream
    block, the toy block-average VAE of factor 8; CPU, seconds) or "full" (FLUX.1's architecture, for layout checks
    on the meta device)."""
    import diffusers

    from i2am.adapters._components import build_vae, on_device

    if pipeline not in PIPELINES + ADAPTER_CALL_ONLY:
        raise ValueError(f"no from-config build for {pipeline!r}; transformer pipelines: "
                         f"{list(PIPELINES + ADAPTER_CALL_ONLY)}")
    device = torch.device(device)
    torch.manual_seed(seed)
    with on_device(device):
        if pipeline == "Flux2Pipeline":
            return _flux2(size, device)
        if pipeline in ("QwenImageEditPipeline", "QwenImageEditPlusPipeline"):
            return _qwen_edit(size, pipeline)
        if pipeline == "StableDiffusion3Pipeline":
            return _sd3(size)
        if pipeline == "LongCatImageEditPipeline":
            return _longcat_edit(size)
        if pipeline == "JoyImageEditPipeline":
            return _joyimage_edit(size)
        if size == "full":
            vae = diffusers.AutoencoderKL(**FLUX1_VAE)
            transformer = diffusers.FluxTransformer2DModel(guidance_embeds=True)   # the FLUX.1 defaults
        else:
            vae = build_vae("tiny")
            vae.register_to_config(shift_factor=0.0)   # FLUX pipelines shift latents; the toy VAE has no shift
            transformer = diffusers.FluxTransformer2DModel(
                patch_size=1, in_channels=4 * vae.config.latent_channels, num_layers=1, num_single_layers=1,
                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                axes_dims_rope=[4, 4, 8])
    extra = {"image_encoder": None, "feature_extractor": None} if pipeline == "FluxKontextInpaintPipeline" else {}
    pipe = getattr(diffusers, pipeline)(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae,
                                        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                        transformer=transformer, **extra)
    for module in (pipe.vae, pipe.transformer):
        module.eval()
    return pipe


def _flux2(size: str, device):
    import diffusers

    if size == "full":
        vae, transformer = diffusers.AutoencoderKLFlux2(), diffusers.Flux2Transformer2DModel()   # FLUX.2's defaults
    else:
        vae = diffusers.AutoencoderKLFlux2(block_out_channels=(8, 8, 8, 8), latent_channels=4, norm_num_groups=4,
                                           layers_per_block=1, use_quant_conv=False, use_post_quant_conv=False)
        transformer = diffusers.Flux2Transformer2DModel(
            patch_size=1, in_channels=4 * vae.config.latent_channels, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, timestep_guidance_channels=32,
            axes_dims_rope=[4, 4, 4, 4])
    pipe = diffusers.Flux2Pipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                                   text_encoder=None, tokenizer=None, transformer=transformer.eval())
    return pipe


def _qwen_edit(size: str, pipeline: str):
    """Qwen-Image-Edit and its Plus variant (the same components): its video VAE (spatial factor 8) and its
    double-stream transformer; "tiny" has 2 blocks of 2 heads of 16 channels over a 32-wide text stream (the real one
    reads Qwen2.5-VL's 3584-wide hidden states)."""
    import diffusers

    if size == "full":
        vae, transformer = diffusers.AutoencoderKLQwenImage(), diffusers.QwenImageTransformer2DModel()
    else:
        vae = diffusers.AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                               temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                               latents_std=[1.0] * 4)
        transformer = diffusers.QwenImageTransformer2DModel(
            patch_size=2, in_channels=4 * vae.config.z_dim, out_channels=vae.config.z_dim, num_layers=2,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, guidance_embeds=False,
            axes_dims_rope=(8, 4, 4))
    return getattr(diffusers, pipeline)(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                                        text_encoder=None, tokenizer=None, processor=None,
                                        transformer=transformer.eval())


def _sd3(size: str):
    """Stable Diffusion 3 (text-to-image): "tiny" is a random ``SD3Transformer2DModel`` of 2 joint blocks of 2 heads of
    16 channels over a 32-wide text stream (2x2 patches of the toy VAE's 4 latent channels: the toy world's 128x96
    gives 8x6 tokens), "full" stable-diffusion-3-medium's layout (text stream 4096 wide: CLIP-L + CLIP-G + T5)."""
    import diffusers

    from i2am.adapters._components import build_vae

    if size == "full":
        vae, transformer = diffusers.AutoencoderKL(**SD3_VAE), diffusers.SD3Transformer2DModel(**SD3_MEDIUM)
    else:
        vae = build_vae("tiny")
        vae.register_to_config(shift_factor=0.0)   # SD3 shifts latents; the toy VAE has no shift
        transformer = diffusers.SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=vae.config.latent_channels, num_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=32,
            out_channels=vae.config.latent_channels, pos_embed_max_size=32)
    return diffusers.StableDiffusion3Pipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=SD3_SHIFT), vae=vae.eval(), text_encoder=None,
        tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None,
        transformer=transformer.eval())


def _longcat_edit(size: str):
    """LongCat-Image-Edit: "tiny" has 1 double- and 1 single-stream block of 2 heads of 16 channels over a 32-wide
    text stream and a 4-level VAE (factor 8) with the 16 latent channels the pipeline hard-codes; "full" the
    transformer's defaults (the real text stream is Qwen2.5-VL's, 3584 wide) and FLUX.1's VAE."""
    import diffusers

    if size == "full":
        vae = diffusers.AutoencoderKL(**FLUX1_VAE)
        transformer = diffusers.LongCatImageTransformer2DModel()
    else:
        vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8,) * 4,
                                      down_block_types=("DownEncoderBlock2D",) * 4,
                                      up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4,
                                      shift_factor=0.0)
        transformer = diffusers.LongCatImageTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    return diffusers.LongCatImageEditPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                                              text_encoder=None, tokenizer=None, text_processor=NoTextProcessor(),
                                              transformer=transformer.eval())


def _joyimage_edit(size: str):
    """JoyImage-Edit: "tiny" has 2 double-stream blocks of 2 heads of 16 channels over a 32-wide text stream, 2x2
    patches of a tiny Wan VAE (factor 8, 4 latent channels); "full" the defaults of both."""
    import diffusers

    if size == "full":
        vae, transformer = diffusers.AutoencoderKLWan(), diffusers.JoyImageEditTransformer3DModel()
    else:
        vae = diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                         temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                         latents_std=[1.0] * 4)
        transformer = diffusers.JoyImageEditTransformer3DModel(patch_size=[1, 2, 2], in_channels=4, hidden_size=32,
                                                               num_attention_heads=2, text_dim=32, num_layers=2,
                                                               rope_dim_list=[4, 6, 6])
    return diffusers.JoyImageEditPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                                          text_encoder=None, tokenizer=None, transformer=transformer.eval(),
                                          processor=None)
