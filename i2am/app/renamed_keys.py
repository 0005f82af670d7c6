"""Command-line keys that were renamed: an override spelling the old one is refused with the new spelling, before
Hydra reads it (Hydra would otherwise take ``evaluators=imacs`` as a value for the ``evaluators`` node, or say only
that it cannot override it).
"""
from __future__ import annotations

from collections.abc import Iterable

from i2am.errors import UserError

# old config-group key -> (new key, what it chooses)
RENAMED_GROUPS = {
    "evaluators": ("evaluator_set", "the set of per-sample evaluators, conf/evaluator_set/<set>.yaml"),
}


class RenamedKeyError(UserError, ValueError):
    """An override uses a config group key that has been renamed."""


def override_key(override: str) -> str:
    """The key an override sets: ``+evaluators=toy`` -> ``evaluators``, ``evaluators.imacs.penalty=2`` ->
    ``evaluators.imacs.penalty``."""
    text = override.strip()
    text = text.removeprefix("override ").lstrip("~+")
    return text.split("=", 1)[0].strip().lstrip("/")


def refuse_renamed_keys(overrides: Iterable[str]) -> None:
    """Raise RenamedKeyError for the first override that chooses a renamed group by its old key."""
    for override in overrides:
        key = override_key(override)
        if key in RENAMED_GROUPS and "=" in override:
            new, what = RENAMED_GROUPS[key]
            value = override.split("=", 1)[1]
            raise RenamedKeyError(
                f"{override!r}: the key {key}= was renamed; choose {what} with {new}={value} "
                f"({key}.<name>.<option>=... still sets one evaluator's option)")
