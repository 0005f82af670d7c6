"""Adapters over any image-conditioned diffusers pipeline: UNet pipelines here, diffusion transformers in ``dit/``."""
