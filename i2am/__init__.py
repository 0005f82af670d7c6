"""i2am: I2AM bi-attribution maps for image-to-image latent diffusion models."""

__version__ = "0.1.0"
__all__ = ["toy", "trace"]


def __getattr__(name):
    # ``i2am.trace`` and ``i2am.toy`` import torch and diffusers: load them on first use so ``import i2am`` stays light.
    if name == "trace":
        from i2am.tracing import trace
        return trace
    if name == "toy":
        import importlib
        return importlib.import_module("i2am.toy")
    raise AttributeError(f"module 'i2am' has no attribute {name!r}")
