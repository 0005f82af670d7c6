"""LTX-2 image-to-video built from config, without text encoder (nothing downloaded): random weights, CPU, seconds.
The sizes are those of diffusers' own fast tests: a 2-block ``LTX2VideoTransformer3DModel`` (video: 2 heads of 8,
patch 1; audio: 2 heads of 4) with its text connectors, a one-level causal video VAE (time / 2, space / 2), the audio
VAE and the vocoder."""
from __future__ import annotations

import torch

LTX2_PIPELINE = "LTX2ImageToVideoPipeline"
LTX2_CAPTION_DIM = 32   # the connectors' width (4 heads of 8)
LTX2_TEXT_DIM = LTX2_CAPTION_DIM * 3   # the text encoder's hidden states the connectors read (text_proj_in_factor 3)


def build_ltx2_pipeline(seed: int = 0):
    """A tiny ``diffusers.LTX2ImageToVideoPipeline`` with random weights on the CPU (its call takes
    ``prompt_embeds`` of ``LTX2_TEXT_DIM`` channels with a ``prompt_attention_mask``: it has no text encoder)."""
    import diffusers
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    torch.manual_seed(seed)
    transformer = diffusers.LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=LTX2_CAPTION_DIM, rope_double_precision=False, rope_type="split")
    connectors = LTX2TextConnectors(
        caption_channels=LTX2_CAPTION_DIM, text_proj_in_factor=3, video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split")
    vae = diffusers.AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), decoder_block_out_channels=(8,),
        layers_per_block=(1,), decoder_layers_per_block=(1, 1), spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,), decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False, patch_size=1,
        patch_size_t=1, encoder_causal=True, decoder_causal=False)
    audio_vae = diffusers.AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8)
    vocoder = LTX2Vocoder(
        in_channels=2 * 8, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2],
        resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000)
    return diffusers.LTX2ImageToVideoPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae.eval(), audio_vae=audio_vae.eval(),
        text_encoder=None, tokenizer=None, connectors=connectors.eval(), transformer=transformer.eval(),
        vocoder=vocoder.eval())
