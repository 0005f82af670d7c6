"""Name -> adapter factory registry (timm style): ``@register_model("pbe")`` on a factory function, or
``register_sizes("pbe", PaintByExample)`` for an adapter that comes in the three standard sizes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

_FACTORIES: dict[str, Callable] = {}

TOY_IMAGE_SIZE = (128, 96)   # the tiny and small presets' default image size (the toy world's)


def register_model(name: str) -> Callable[[Callable], Callable]:
    def decorate(factory: Callable) -> Callable:
        if name in _FACTORIES and _FACTORIES[name] != factory:
            raise ValueError(f"model name {name!r} is registered twice "
                             f"({_origin(_FACTORIES[name])} and {_origin(factory)})")
        _FACTORIES[name] = factory
        return factory
    return decorate


@dataclass(frozen=True)
class SizedFactory:
    """Builds ``adapter(size, device=..., **defaults, **overrides)``; equal factories may be registered again."""
    adapter: type
    size: str
    defaults: dict = field(default_factory=dict, hash=False)

    def __call__(self, device="cpu", **overrides):
        return self.adapter(self.size, device=device, **{**self.defaults, **overrides})


def register_sizes(family: str, adapter: type, full_defaults: dict | None = None) -> None:
    """Registers ``family`` (the released size), ``family-tiny`` (CPU-sized, random weights) and ``family-small``
    (LDM's GroupNorm(32) at small width, random weights: for small originals), the last two at the toy image size."""
    toy = {"image_size": TOY_IMAGE_SIZE}
    for name, size, defaults in ((family, "full", dict(full_defaults or {})),
                                 (f"{family}-tiny", "tiny", toy), (f"{family}-small", "small", toy)):
        register_model(name)(SizedFactory(adapter, size, defaults))


def _origin(factory: Callable) -> str:
    return getattr(factory, "adapter", factory).__module__


def model_factory(name: str) -> Callable:
    if name not in _FACTORIES:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(_FACTORIES)}")
    return _FACTORIES[name]


def registered_names() -> list[str]:
    return sorted(_FACTORIES)
