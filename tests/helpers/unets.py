"""Tiny diffusers UNets shared by the capture tests."""
import torch
from diffusers import UNet2DConditionModel


def sharp_four_level_unet() -> UNet2DConditionModel:
    """Four levels, cross-attention on three (16-dim context), seeded; 2-D weights scaled by 4 so that attention is
    far sharper than the default init and the maps are far from uniform."""
    torch.manual_seed(0)
    model = UNet2DConditionModel(
        in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(16, 16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8).eval()
    for p in model.parameters():
        if p.dim() == 2:
            p.data.mul_(4)
    return model
