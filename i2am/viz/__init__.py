"""Every figure i2am draws: matplotlib ``Figure`` objects on the Agg canvas, never pyplot, so the user's backend is left
alone."""
