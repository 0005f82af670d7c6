"""Shared test helpers: naive reference implementations, constructed models, CLI runners."""
