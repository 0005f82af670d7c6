"""Image-to-video pipelines: their tiny builds from config (``tiny``, ``unet_tiny``, ``ltx2_tiny``) and
``model=diffusers`` for them, one small adapter class per pipeline on what they share (``base``): the ones on Wan
2.1's transformer (``wan``) and LTX-2 (``ltx2``, on ``wan``'s base), and the UNets that fold the frames into the
batch (``folded``: ``i2vgen_xl``, ``svd``); ``model``: the registered ``diffusers-video-tiny`` and the folders of
``model=diffusers``."""
