"""The application layer: the ``i2am`` CLI, its tasks (entry points that only instantiate), config schemas and startup
checks, dashboards, the attribution loop and ``reproduce``."""
