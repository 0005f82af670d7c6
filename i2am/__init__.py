"""i2am: I2AM bi-attribution maps for image-to-image latent diffusion models."""

__version__ = "0.1.0"
__all__ = ["trace"]


def __getattr__(name):
    # ``i2am.trace`` imports torch and diffusers: load it on first use so ``import i2am`` stays light.
    if name == "trace":
        from i2am.tracing import trace
        return trace
    raise AttributeError(f"module 'i2am' has no attribute {name!r}")
