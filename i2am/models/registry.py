"""Name -> adapter factory registry (timm style): ``@register_model("pbe")`` on a factory function."""
from __future__ import annotations

from collections.abc import Callable

_FACTORIES: dict[str, Callable] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    def decorate(factory: Callable) -> Callable:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"model name {name!r} is registered twice "
                             f"({_FACTORIES[name].__module__} and {factory.__module__})")
        _FACTORIES[name] = factory
        return factory
    return decorate


def model_factory(name: str) -> Callable:
    if name not in _FACTORIES:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(_FACTORIES)}")
    return _FACTORIES[name]


def registered_names() -> list[str]:
    return sorted(_FACTORIES)
