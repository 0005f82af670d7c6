"""Image-to-video pipelines: their tiny builds from config (``tiny``, ``unet_tiny``) and ``model=diffusers`` for the
ones on Wan 2.1's transformer (``wan``: the adapters, one small class per pipeline; ``model``: the registered
``diffusers-video-tiny`` and the folders of ``model=diffusers``)."""
