"""i2am: I2AM bi-attribution maps for image-to-image latent diffusion models."""

__version__ = "0.1.0"
