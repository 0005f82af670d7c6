"""Architecture configs of PASD's parts: full size (SD-1.5) and the CPU-sized ``pasd-tiny`` preset.

The full-size UNet config is the SD-1.5 ``unet/config.json`` that PASD ships in ``checkpoints/stable-diffusion-v1-5``;
the ControlNet config is what ``ControlNetModel.from_unet(unet)`` derives from it plus PASD's two own switches
(``return_rgbs``, ``use_rrdb``). The tiny preset keeps every structural choice (4 levels, 2 layers per block,
cross-attention in the first three down levels, an attention-free 1/8 up level, a VAE that downsamples by 8) so that
it has the same 12 PACA layers on grids 1/8, 1/4, 1/2 and 1 of the latent.
"""
from __future__ import annotations

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
}

# ControlNetModel.from_unet copies these UNet fields; everything else keeps the ControlNetModel default.
CONTROLNET_FIELDS_FROM_UNET = (
    "in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "block_out_channels", "layers_per_block",
    "downsample_padding", "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps", "cross_attention_dim",
    "attention_head_dim",
)
DEGRADATION_REMOVAL_CHANNELS = [16, 32, 96, 256]

TINY_UNET = {
    **SD15_UNET,
    "sample_size": 16,
    "block_out_channels": [32, 32, 64, 64],
    "attention_head_dim": 2,
    "cross_attention_dim": 32,
    "norm_num_groups": 8,
}
TINY_DEGRADATION_REMOVAL_CHANNELS = [8, 8, 16, 16]

SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
TINY_VAE = {
    **SD15_VAE,
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 128,
}

SD15_TEXT_ENCODER = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
TINY_TEXT_ENCODER = {
    **SD15_TEXT_ENCODER,
    "vocab_size": 1000,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "bos_token_id": 998,
    "eos_token_id": 999,
    "pad_token_id": 999,
}

# SD-1.5's scheduler/scheduler_config.json: the betas every PASD sampler is built on.
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def controlnet_config(unet_config: dict, conditioning_channels=DEGRADATION_REMOVAL_CHANNELS, *, use_rrdb=False) -> dict:
    """The PASD ControlNet config derived from a UNet config, as ``train_pasd.py`` builds it (``from_unet``)."""
    config = {key: unet_config[key] for key in CONTROLNET_FIELDS_FROM_UNET if key in unet_config}
    config["conditioning_embedding_out_channels"] = list(conditioning_channels)
    config["return_rgbs"] = True
    config["use_rrdb"] = use_rrdb
    return config
