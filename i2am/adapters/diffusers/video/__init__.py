"""Image-to-video pipelines: their tiny builds from config (``tiny``)."""
