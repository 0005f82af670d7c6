"""Diffusion-transformer editors (FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit, SD3) with joint attention."""
