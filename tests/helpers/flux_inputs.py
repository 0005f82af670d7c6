"""Inputs of a tiny FLUX transformer in the Kontext layout: 4x4 generated tokens, then 3x5 reference tokens."""
import torch


def kontext_inputs(transformer, batch: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    channels, text_dim = transformer.config.in_channels, transformer.config.joint_attention_dim
    gen_ids = torch.cartesian_prod(torch.zeros(1), torch.arange(4.0), torch.arange(4.0))
    ref_ids = torch.cartesian_prod(torch.ones(1), torch.arange(3.0), torch.arange(5.0))
    return dict(hidden_states=torch.randn(batch, 16 + 15, channels, generator=g),
                encoder_hidden_states=torch.randn(batch, 5, text_dim, generator=g),
                pooled_projections=torch.randn(batch, text_dim, generator=g), timestep=torch.full((batch,), 0.5),
                img_ids=torch.cat([gen_ids, ref_ids]), txt_ids=torch.zeros(5, 3), return_dict=False)
