"""Image-to-video pipelines: their tiny builds from config (``tiny``, ``unet_tiny``, ``ltx2_tiny``) and
``model=diffusers`` for them, one small adapter class per pipeline on what they share (``base``): the ones on a video
transformer (``transformer``: Wan 2.1's in ``wan``, LTX-2 in ``ltx2``, HunyuanVideo-1.5 in ``hunyuan_video15``), and
the UNets that fold the frames into the batch (``folded``: ``i2vgen_xl``, ``svd``); ``model``: the registered
``diffusers-video-tiny`` and the folders of ``model=diffusers``."""
