"""Command-line keys that were renamed: an override spelling the old one is refused with the new spelling, before
Hydra reads it (Hydra would otherwise take ``evaluators=imacs`` as a value for the ``evaluators`` node, or say only
that it cannot override it). The same goes for the retired paper-artifact spellings: the ``experiment=<artifact>-toy``
twins and the ``+artifact/<artifact>=<label>`` run configs are now parts of conf/experiment/<artifact>.yaml.
"""
from __future__ import annotations

from collections.abc import Iterable

from i2am.errors import UserError

# old config-group key -> (new key, what it chooses)
RENAMED_GROUPS = {
    "evaluators": ("evaluator_set", "the set of per-sample evaluators, conf/evaluator_set/<set>.yaml"),
}


TOY_SUFFIX = "-toy"
TINY_SUFFIX = "-tiny"


class RenamedKeyError(UserError, ValueError):
    """An override uses a config group key that has been renamed."""


def override_key(override: str) -> str:
    """The key an override sets: ``+evaluators=toy`` -> ``evaluators``, ``evaluators.imacs.penalty=2`` ->
    ``evaluators.imacs.penalty``."""
    text = override.strip()
    text = text.removeprefix("override ").lstrip("~+")
    return text.split("=", 1)[0].strip().lstrip("/")


def refuse_renamed_keys(overrides: Iterable[str]) -> None:
    """Raise RenamedKeyError for the first override that chooses a renamed group by its old key or spells a retired
    paper-artifact config."""
    for override in overrides:
        refuse_retired_artifact_spellings(override)
        key = override_key(override)
        if key in RENAMED_GROUPS and "=" in override:
            new, what = RENAMED_GROUPS[key]
            value = override.split("=", 1)[1]
            raise RenamedKeyError(
                f"{override!r}: the key {key}= was renamed; choose {what} with {new}={value} "
                f"({key}.<name>.<option>=... still sets one evaluator's option)")


def refuse_retired_artifact_spellings(override: str) -> None:
    """Raise RenamedKeyError for ``experiment=<artifact>-toy`` and ``+artifact/<artifact>=<label>[-tiny]``."""
    key, value = override_key(override), override.partition("=")[2].strip()
    if not ((key == "experiment" and value.endswith(TOY_SUFFIX)) or key.startswith("artifact/")):
        return
    from i2am.report.artifacts import ARTIFACTS, task_of  # only here: the CLI's startup stays free of it

    if key == "experiment":
        name = value.removesuffix(TOY_SUFFIX)
        if name in ARTIFACTS:
            raise RenamedKeyError(
                f"{override!r}: the offline twin is now the artifact.toy block of conf/experiment/{name}.yaml; run "
                f"`i2am reproduce {name} --toy` or `i2am {task_of(name)} -m experiment={name} artifact.twin=toy`")
        return
    name, label = key.removeprefix("artifact/"), value.removesuffix(TINY_SUFFIX)
    twin = " artifact.twin=toy" if value.endswith(TINY_SUFFIX) else ""
    task = task_of(name) if name in ARTIFACTS else "<task>"
    raise RenamedKeyError(
        f"{override!r}: the per-run configs are now artifact.runs of conf/experiment/{name}.yaml; run that label with "
        f"`i2am {task} -m experiment={name}{twin} artifact.labels=[{label}]` (every label: i2am reproduce {name})")
